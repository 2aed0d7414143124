"""The NGSI-LD q language: the parser never crashes, round-trips, and the grammar over HTTP."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from cityops.context.errors import BadRequestData
from cityops.context.models import Entity
from cityops.context.query import Exists, Logical, Path, Term, When, compile_q, parse_q

from .conftest import BASE, FIXTURES

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
AQ = "urn:ngsi-ld:AirQualityObserved:q-"
# Examples of q sent over HTTP read the data one test loaded; no example writes.
HTTP_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _expand(term: str) -> str:
    return "https://uri.etsi.org/ngsi-ld/default-context/" + term


def _load(client: TestClient, admin: dict[str, str]) -> None:
    entities = json.loads((FIXTURES / "query_entities.json").read_text(encoding="utf-8"))
    response = client.post(f"{BASE}/entityOperations/upsert", json=entities, headers=admin)
    assert response.status_code == 204, response.text


@pytest.fixture
def loaded(client: TestClient, admin: dict[str, str]) -> TestClient:
    """The client, its database holding the q fixture (loaded once per test, not per example)."""
    _load(client, admin)
    return client


def _ids(client: TestClient, admin: dict[str, str], q: str, type_: str = "AirQualityObserved"):  # type: ignore[no-untyped-def]
    response = client.get(f"{BASE}/entities", params={"type": type_, "q": q}, headers=admin)
    assert response.status_code == 200, (q, response.text)
    return [e["id"].removeprefix(AQ) for e in response.json()]


# --- properties of the parser ----------------------------------------------------------------

Q_CHARS = list('abpmno25.;|()!=<>~"\\,[]:-TZ0123456789 .{}*+?^$éạ@#/')


@settings(max_examples=3000, deadline=None)
@given(st.text(st.sampled_from(Q_CHARS), max_size=40) | st.text(max_size=30))
def test_any_text_parses_or_is_bad_request_data(text: str) -> None:
    """Whatever the text, the parser answers a tree or BadRequestData, and trees compile."""
    try:
        tree = parse_q(text)
    except BadRequestData:
        return
    for name, dialect in (("sqlite", sqlite.dialect()), ("postgresql", postgresql.dialect())):
        try:
            condition = compile_q(tree, _expand, name)
        except BadRequestData:
            continue
        str(select(Entity.pk).where(condition).compile(dialect=dialect))


@pytest.mark.parametrize(
    "text",
    [
        "name~=" + "(" * 1200,  # Python's regex parser runs out of recursion
        'name~="' + "(" * 1000 + ")" * 1000 + '"',
        "name~=x{4294967296}",  # Python's regex compiler overflows
        "(" * 25 + "a" + ")" * 25,  # deeper than the parser allows
        "a==" + "1" * 4000,  # longer than a q may be
        "a==1e400",
        "a==2026-13-45T00:00:00Z",
    ],
)
def test_hostile_q_is_bad_request_data(text: str) -> None:
    with pytest.raises(BadRequestData):
        parse_q(text)


NAMES = st.text(st.sampled_from("abcxyzPM25_-@:#"), min_size=1, max_size=8).filter(
    lambda n: n not in ("true", "false") and not n.startswith(("true", "false"))
)
PATHS = st.builds(
    Path,
    NAMES,
    st.none() | NAMES,
    st.lists(NAMES, max_size=2).map(tuple),
)
NUMBERS = st.integers(-(10**9), 10**9) | st.floats(-1e9, 1e9, allow_nan=False).filter(
    lambda f: not f.is_integer()
)
STRINGS = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
WHENS = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda d: When(d.strftime("%Y-%m-%dT%H:%M:%SZ"), d.replace(microsecond=0)))
SCALARS = NUMBERS | STRINGS | WHENS | st.booleans()
PATTERNS = st.sampled_from(["^Trạm", "Biên Hòa$", "a|b", "(x);y", "[0-9]+", 'q"uote'])


@st.composite
def terms(draw: st.DrawFn) -> Any:
    path = draw(PATHS)
    kind = draw(st.sampled_from(["exists", "scalar", "range", "list", "pattern"]))
    if kind == "exists":
        return Exists(path, draw(st.booleans()))
    if kind == "pattern":
        return Term(path, draw(st.sampled_from(["~=", "!~="])), draw(PATTERNS), "scalar")
    if kind == "scalar":
        return Term(
            path, draw(st.sampled_from(["==", "!=", ">", ">=", "<", "<="])), draw(SCALARS), kind
        )
    values = draw(st.sampled_from([NUMBERS, STRINGS, WHENS]))
    op = draw(st.sampled_from(["==", "!="]))
    if kind == "range":
        return Term(path, op, (draw(values), draw(values)), kind)
    return Term(path, op, tuple(draw(st.lists(values, min_size=2, max_size=4))), kind)


TREES = st.recursive(
    terms(),
    lambda children: st.builds(
        Logical,
        st.sampled_from(["and", "or"]),
        st.lists(children, min_size=2, max_size=3).map(tuple),
    ),
    max_leaves=8,
)


def _render_value(value: Any) -> str:
    if isinstance(value, When):
        return value.text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def _render(node: Any, top: bool = True) -> str:
    if isinstance(node, Logical):
        text = (";" if node.op == "and" else "|").join(_render(i, False) for i in node.items)
        return text if top else f"({text})"
    path = node.path.attribute
    if node.path.member is not None:
        path += "." + node.path.member
    if node.path.compound:
        path += "[" + ".".join(node.path.compound) + "]"
    if isinstance(node, Exists):
        return ("!" if node.negate else "") + path
    if node.op in ("~=", "!~="):
        return path + node.op + _render_value(node.value)
    if node.kind == "range":
        return f"{path}{node.op}{_render_value(node.value[0])}..{_render_value(node.value[1])}"
    if node.kind == "list":
        return path + node.op + ",".join(_render_value(v) for v in node.value)
    return path + node.op + _render_value(node.value)


@settings(max_examples=800, deadline=None)
@given(TREES)
def test_rendered_trees_parse_back_to_the_same_tree(tree: Any) -> None:
    assert parse_q(_render(tree)) == tree


def test_precedence_and_equivalent_spellings() -> None:
    # `;` binds tighter than `|`; =~ and ~= are one operator; spaces around the whole are ignored.
    assert parse_q("a|b;c") == Logical(
        "or",
        (
            Exists(Path("a", None, ()), False),
            Logical(
                "and", (Exists(Path("b", None, ()), False), Exists(Path("c", None, ()), False))
            ),
        ),
    )
    assert parse_q('name=~"x"') == parse_q("name~=x")
    assert parse_q("  a>1  ") == parse_q("a>1")
    assert parse_q("a==1..5.5") == Term(Path("a", None, ()), "==", (1, 5.5), "range")


# --- the grammar over HTTP -------------------------------------------------------------------


GRAMMAR = [
    ("pm25>50", ["2", "3"]),
    ("pm25>=55", ["2", "3"]),
    ("pm25<12.5", ["4"]),
    ("pm25<=12.5", ["1", "4"]),
    ("pm25==5", ["4"]),
    ("pm25!=5", ["1", "2", "3"]),  # an entity without pm25 is not "different from 5"
    ("pm25>5e1", ["2", "3"]),
    ("no2>-1", ["1", "2", "3", "5"]),
    ("pm25==10..60", ["1", "2"]),
    ("pm25==1..5.5", ["4"]),
    ("pm25!=10..60", ["3", "4"]),
    ('airQualityLevel=="good","moderate"', ["1", "2", "4", "5"]),
    ('airQualityLevel!="good","moderate"', ["3"]),
    ("pm25>50;no2<40", ["3"]),
    ("pm25>50|no2<15", ["2", "3", "5"]),
    ('(pm25>50|no2<15);airQualityLevel=="good"', ["5"]),
    ('pm25>50|no2<15;airQualityLevel=="unhealthy"', ["2", "3"]),
    ('(pm25>50|no2<15);airQualityLevel=="unhealthy"', ["3"]),
    ("((pm25<20);(no2>25|!no2))", ["1", "4"]),
    ('name=="Trạm Biên Hòa"', ["1"]),
    ('name=="Khu công nghiệp Amata"', ["5"]),
    ("name~=Long", ["2"]),
    ('name=~"^Trạm"', ["1", "2", "3"]),
    ('name!~="^Trạm"', ["4", "5"]),
    ('name~="Khánh|Bom"', ["2", "3"]),
    ("pm25.quality>0.9", ["1"]),
    ("pm25.quality<0.9", ["2"]),
    ("pm25.quality", ["1", "2"]),
    ('pm25.unitCode=="GQ"', ["1", "2", "3"]),
    ("pm25.observedAt>=2026-11-20T03:00:00Z", ["1", "2"]),
    ("pm25.observedAt<2026-11-20T00:00:00Z", ["3"]),
    ("pm25.observedAt==2026-11-20T04:00:00Z..2026-11-20T06:00:00+00:00", ["2"]),
    ('address[addressLocality]=="Biên Hòa"', ["1"]),
    ('address[addressLocality]=="Long Khánh","Trảng Bom"', ["2", "3"]),
    ("address[streetAddress]", ["1"]),
    ("address", ["1", "2", "3"]),
    ("!address", ["4", "5"]),
    ("no2", ["1", "2", "3", "5"]),
    ("!no2", ["4"]),
    ("dateObserved>=2026-11-20T04:00:00Z", ["2"]),
    ("online==true", ["1", "3"]),
    ("online==false", ["2"]),
    ("temperature>30", []),  # another type's attribute
]


def test_q_grammar_over_http(client: TestClient, admin: dict[str, str]) -> None:
    _load(client, admin)
    wrong = {q: _ids(client, admin, q) for q, _ in GRAMMAR}
    expected = dict(GRAMMAR)
    assert wrong == expected


def test_q_across_types_and_post_query(client: TestClient, admin: dict[str, str]) -> None:
    _load(client, admin)
    response = client.get(f"{BASE}/entities", params={"q": 'name~="Biên Hòa$"'}, headers=admin)
    assert [e["id"] for e in response.json()] == [f"{AQ}1", "urn:ngsi-ld:WeatherObserved:q-6"]
    posted = client.post(
        f"{BASE}/entityOperations/query",
        json={
            "type": "Query",
            "entities": [{"type": "AirQualityObserved"}],
            "q": 'address[addressLocality]=="Trảng Bom";pm25>50',
        },
        headers=admin,
    )
    assert posted.status_code == 200, posted.text
    assert [e["id"] for e in posted.json()] == [f"{AQ}3"]


BAD_Q = [
    "pm25>",
    "pm25>>5",
    "(pm25>5",
    "pm25>5)",
    "pm25==1..",
    'pm25=="a"..5',
    'name=="unterminated',
    "name~=(",
    "a.b.c==1",
    'pm25==1,"x"',  # a list mixing numbers and text
    "!pm25>5",
    ";",
    "|",
    "pm25>5;;no2<1",
    "pm25>5||no2<1",
    "address[]==1",
    "address[x==1",
    "name~=x{4294967296}",
    "name~=" + "(" * 1200,
    "(" * 25 + "pm25" + ")" * 25,
    "pm25==" + "9" * 4000,
]


def test_bad_q_is_400_bad_request_data(client: TestClient, admin: dict[str, str]) -> None:
    _load(client, admin)
    answers = {}
    for q in BAD_Q:
        response = client.get(
            f"{BASE}/entities", params={"type": "AirQualityObserved", "q": q}, headers=admin
        )
        answers[q[:40]] = (response.status_code, response.json().get("type"))
    assert answers == {q[:40]: (400, ERR + "BadRequestData") for q in BAD_Q}


def test_regex_postgresql_refuses_is_400(client: TestClient, admin: dict[str, str]) -> None:
    # Python accepts look-behinds; PostgreSQL does not: either way a client never sees a 500.
    _load(client, admin)
    response = client.get(
        f"{BASE}/entities",
        params={"type": "AirQualityObserved", "q": 'name~="(?<=Trạm )Long"'},
        headers=admin,
    )
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:
        assert [e["id"] for e in response.json()] == [f"{AQ}2"]
    after = client.get(
        f"{BASE}/entities", params={"type": "AirQualityObserved", "q": "pm25>50"}, headers=admin
    )
    assert [e["id"] for e in after.json()] == [f"{AQ}2", f"{AQ}3"]


@HTTP_SETTINGS
@given(
    q=st.text(st.sampled_from(Q_CHARS), min_size=1, max_size=30) | st.text(min_size=1, max_size=20)
)
def test_any_q_over_http_is_200_or_400(loaded: TestClient, admin: dict[str, str], q: str) -> None:
    response = loaded.get(
        f"{BASE}/entities", params={"type": "AirQualityObserved", "q": q}, headers=admin
    )
    assert response.status_code in (200, 400), (q, response.text)
    if response.status_code == 400:
        assert response.json()["type"] == ERR + "BadRequestData"


@HTTP_SETTINGS
@given(tree=TREES)
def test_any_well_formed_q_over_http_never_500(
    loaded: TestClient, admin: dict[str, str], tree: Any
) -> None:
    q = _render(tree)
    response = loaded.get(
        f"{BASE}/entities", params={"type": "AirQualityObserved", "q": q}, headers=admin
    )
    # Well-formed, yet a list or range may mix numbers and text: that is the client's error.
    assert response.status_code in (200, 400), (q, response.text)
