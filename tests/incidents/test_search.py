"""Free-text search of the incident list through the word index (migration 0018): every word
must match, without diacritics, the last one as a prefix; codes are still looked up; scopes and
totals hold; the index follows title changes and deletions; and it finds the same incidents
as a LIKE search for whole words."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import String, cast, delete, inspect, literal, select, text

from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import Scope
from cityops.core.text import fold, words
from cityops.incidents import service
from cityops.incidents.models import Incident, IncidentDepartment

from .conftest import (
    AREA,
    ENV,
    FAR_WARD,
    INCIDENTS,
    OTHER_WARD,
    WARD,
    IncidentFactory,
    Person,
    PersonFactory,
)


def _search(client: TestClient, person: Person, q: str, **params: Any) -> tuple[set[str], int]:
    response = client.get(
        INCIDENTS, params={"q": q, "limit": 100, **params}, headers=person.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return {item["title"] for item in body["items"]}, body["total"]


def _titles(client: TestClient, person: Person, q: str, **params: Any) -> set[str]:
    return _search(client, person, q, **params)[0]


FLOOD = "Ngập sâu sau mưa lớn tại đường Võ Thị Sáu"
DUST = "Bụi mịn PM2.5 vượt ngưỡng tại Trấn Biên"
LIGHT = "Đèn chiếu sáng công cộng hỏng, đường Đồng Khởi"
WASTE = "Rác thải tồn đọng chợ Tân Hiệp"
SAU = "Sáu điểm ngập nhẹ ở Long Khánh"


def test_words_folded_prefix_and_every_word(
    client: TestClient, operator: Person, open_incident: IncidentFactory
) -> None:
    for title, category in (
        (FLOOD, "flooding"),
        (DUST, "air_pollution"),
        (LIGHT, "streetlight_fault"),
        (WASTE, "waste_overflow"),
        (SAU, "flooding"),
    ):
        open_incident(title=title, category_code=category)

    # Words without diacritics, in any case, find titles with them.
    assert _titles(client, operator, "ngap") == {FLOOD, SAU}
    assert _titles(client, operator, "MƯA LỚN") == {FLOOD}
    # Sâu (deep) and Sáu (six) fold to the same word.
    assert _titles(client, operator, "NGẬP SÂU") == {FLOOD, SAU}
    assert _titles(client, operator, "dong") == {LIGHT, WASTE}  # đường Đồng, tồn đọng
    # Every word must be there, in any order, not necessarily side by side.
    assert _titles(client, operator, "mua ngap") == {FLOOD}
    assert _titles(client, operator, "ngap long khanh") == {SAU}
    assert _titles(client, operator, "ngap khanh bien") == set()
    # The last word may be the beginning of a word; the others are whole words.
    assert _titles(client, operator, "ngap sa") == {FLOOD, SAU}
    assert _titles(client, operator, "chieu s") == {LIGHT}
    assert _titles(client, operator, "chie sang") == set()
    assert _titles(client, operator, "ngu") == {DUST}  # ngưỡng
    # Words, not pieces of words: `an` is inside `Tân` and `Khánh` but is no word of any title.
    assert _titles(client, operator, "tai an") == set()
    # Punctuation separates words and is never searched for.
    assert _titles(client, operator, "pm2 5") == {DUST}
    assert _titles(client, operator, "PM2.5") == {DUST}
    assert _titles(client, operator, "hong, duong") == {LIGHT}
    assert _search(client, operator, "100%_") == (set(), 0)
    assert _search(client, operator, "*") == (set(), 0)
    # Characters that mean something to a search language are just separators.
    assert _titles(client, operator, 'ngap" OR "bui') == set()
    assert _titles(client, operator, "ngap & !bui:*") == set()
    assert _titles(client, operator, "bui' | 'ngap") == set()


def test_codes_are_still_looked_up(
    client: TestClient, operator: Person, open_incident: IncidentFactory
) -> None:
    first = open_incident(title=FLOOD, category_code="flooding")
    second = open_incident(title=DUST)
    assert _titles(client, operator, first["code"].lower()) == {FLOOD}
    assert _titles(client, operator, second["code"]) == {DUST}
    # The beginning of a code: both.
    assert _titles(client, operator, first["code"][:-1]) == {FLOOD, DUST}
    # A title word that looks like nothing of a code finds titles only.
    assert _titles(client, operator, "sc") == set()


def test_search_keeps_to_the_scope_and_counts_exactly(
    client: TestClient,
    operator: Person,
    person: PersonFactory,
    open_incident: IncidentFactory,
) -> None:
    for unit in (WARD, WARD, WARD, OTHER_WARD, FAR_WARD):
        open_incident(title=FLOOD, category_code="flooding", unit_code=unit)
    open_incident(title=DUST, unit_code=WARD)
    open_incident(
        title=f"{FLOOD} (hỗ trợ)",
        category_code="hospital_overload",
        unit_code=OTHER_WARD,
        supporting_department_codes=[ENV],
    )

    assert _search(client, operator, "ngap sau")[1] == 6
    # The total is exact whatever the page size.
    page = client.get(
        INCIDENTS, params={"q": "ngap sau", "limit": 2, "offset": 2}, headers=operator.headers
    ).json()
    assert (len(page["items"]), page["total"]) == (2, 6)

    # With another filter as well: a page, and past the last page.
    assert _search(client, operator, "ngap sau", unit_code=WARD, limit=2)[1] == 3
    assert _search(client, operator, "ngap sau", unit_code=WARD, offset=10) == (set(), 3)
    assert _search(client, operator, "ngap", department_code=ENV, limit=1)[1] == 6

    ward_officer = person("unit_officer", unit_code=WARD)
    area_operator = person("operator", area_code=AREA)
    env_officer = person("department_officer", department_code=ENV)
    assert _search(client, ward_officer, "ngap sau") == ({FLOOD}, 3)
    assert _search(client, ward_officer, "vo thi sau", unit_code=OTHER_WARD) == (set(), 0)
    assert _search(client, area_operator, "ngap")[1] == 5
    # A supporting department finds the incidents it supports too.
    assert _search(client, env_officer, "ngap ho tro") == ({f"{FLOOD} (hỗ trợ)"}, 1)
    assert _search(client, env_officer, "bui min") == ({DUST}, 1)
    # Filters combine with the words.
    assert _search(client, operator, "ngap", unit_code=FAR_WARD) == ({FLOOD}, 1)
    assert _search(client, operator, "ngap", status="closed") == (set(), 0)


def test_the_index_follows_title_changes(
    client: TestClient, operator: Person, open_incident: IncidentFactory
) -> None:
    incident = open_incident(title=FLOOD, category_code="flooding")
    assert _titles(client, operator, "ngap") == {FLOOD}
    response = client.patch(
        f"{INCIDENTS}/{incident['id']}",
        json={"title": "Triều cường tràn bờ kè Bửu Long"},
        headers=operator.headers,
    )
    assert response.status_code == 200, response.text
    assert _search(client, operator, "ngap") == (set(), 0)
    assert _titles(client, operator, "trieu cuong buu") == {"Triều cường tràn bờ kè Bửu Long"}
    # Other edits leave the words as they are.
    response = client.patch(
        f"{INCIDENTS}/{incident['id']}",
        json={"description": "Nước lên 0,5 m"},
        headers=operator.headers,
    )
    assert response.status_code == 200, response.text
    assert _titles(client, operator, "tran bo ke") == {"Triều cường tràn bờ kè Bửu Long"}
    assert _search(client, operator, "nuoc") == (set(), 0)


# Words of generated titles: some share beginnings (ngập/nghẽn, sâu/sáu/sau, đường/đèn),
# some fold to the same word (sâu, sáu, sau).
_VOCABULARY = (
    "Ngập sâu sáu sau mưa lớn đường Đồng Khởi Biên Hòa ngõ nghẽn tắc giao thông đèn hỏng "
    "rác thải tồn đọng chợ Tân Hiệp cảm biến mất kết nối nước kênh khói bụi PM2.5 cấp cứu "
    "quá tải Long Khánh Trấn Biên Bửu Long Tam Hiệp số 12 120 kè"
)
VOCABULARY = _VOCABULARY.split()


def _bulk_titles(runtime: Runtime, count: int) -> dict[int, str]:
    """Insert `count` incidents with random titles straight into the table (no API, as an
    import or the benchmark does); return their titles by id."""
    rng = random.Random(18)
    now = runtime.clock.now()
    titles: dict[int, str] = {}
    with unit_of_work(runtime.session_factory) as session:
        first = (session.scalar(select(Incident.id).order_by(Incident.id.desc())) or 0) + 1
        rows = []
        for number in range(first, first + count):
            title = " ".join(rng.choices(VOCABULARY, k=rng.randint(2, 8)))
            title = title + rng.choice(("", ",", " – khẩn", "!"))
            titles[number] = title
            rows.append(
                {
                    "id": number,
                    "code": f"SC-1999-{number:06d}",
                    "title": title,
                    "title_folded": service.search_form(title),
                    "category_code": "flooding",
                    "severity": "medium",
                    "status": "new",
                    "source": "manual",
                    "unit_code": rng.choice((WARD, OTHER_WARD, FAR_WARD)),
                    "department_code": ENV,
                    "created_at": now - timedelta(minutes=number),
                    "updated_at": now,
                }
            )
        session.execute(Incident.__table__.insert(), rows)
    return titles


def _index_ids(runtime: Runtime, q: str) -> set[int]:
    with unit_of_work(runtime.session_factory) as session:
        items, total = service.get_all(
            session=session, scope=Scope(), now=runtime.clock.now(), q=q, limit=10_000
        )
        # A page of ten: newest first, with the same total.
        page, page_total = service.get_all(
            session=session, scope=Scope(), now=runtime.clock.now(), q=q, limit=10
        )
    assert total == page_total == len(items)
    assert [item["id"] for item in page] == [item["id"] for item in items[:10]]
    return {item["id"] for item in items}


def _like_ids(runtime: Runtime, q: str) -> set[int]:
    """The incidents a LIKE search finds: each word whole, the last one as a word's beginning."""
    terms = words(q)
    if not terms:
        return set()
    padded = literal(" ") + cast(Incident.title_folded, String) + literal(" ")
    conditions = [padded.contains(f" {term} ", autoescape=True) for term in terms[:-1]]
    conditions.append(padded.contains(f" {terms[-1]}", autoescape=True))
    with unit_of_work(runtime.session_factory) as session:
        return set(session.scalars(select(Incident.id).where(*conditions)))


def test_same_incidents_as_a_like_search_for_whole_words(runtime: Runtime) -> None:
    # Enough titles that some searches match more than service._FEW_MATCHES (another plan).
    titles = _bulk_titles(runtime, 2_500)
    rng = random.Random(2026)
    queries = [
        "t",
        "ngap",
        "sau",
        "bien hoa",
        "pm2 5",
        "12",
        "120",
        "dong khoi",
        "ng",
        "s",
        "tan hiep",
    ]
    for _ in range(60):
        chosen = rng.choice(list(titles.values())).split()
        picked = rng.sample(chosen, k=min(len(chosen), rng.randint(1, 3)))
        query = " ".join(picked)
        queries.append(query if rng.random() < 0.5 else fold(query).upper())
    # Beginnings of words as the last word.
    queries += [
        f"{fold(rng.choice(VOCABULARY))} {fold(rng.choice(VOCABULARY))[:2]}" for _ in range(20)
    ]
    sizes = set()
    for query in queries:
        found = _index_ids(runtime, query)
        sizes.add(len(found) > service._FEW_MATCHES)
        assert found == _like_ids(runtime, query), query
        if not found:
            continue
        # The reference is right: the titles hold the words.
        *whole, last = words(query)
        for incident_id in found & titles.keys():
            title_words = words(titles[incident_id])
            assert all(term in title_words for term in whole), query
            assert any(word.startswith(last) for word in title_words), query
    assert sizes == {False, True}

    # A deleted incident leaves the index with it (incidents are not deleted through the API:
    # this is what a purge or an import's rollback does).
    gone = _index_ids(runtime, "ngap")
    assert gone
    victims = sorted(gone)[:5]
    with unit_of_work(runtime.session_factory) as session:
        session.execute(
            delete(IncidentDepartment).where(IncidentDepartment.incident_id.in_(victims))
        )
        session.execute(delete(Incident).where(Incident.id.in_(victims)))
    assert _index_ids(runtime, "ngap") == gone - set(victims)
    assert _like_ids(runtime, "ngap") == gone - set(victims)


def test_the_word_index_exists_at_the_head(runtime: Runtime) -> None:
    # A later batch migration that rebuilds `incident` on SQLite would drop the triggers.
    engine = runtime.engine
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            triggers = set(
                connection.scalars(
                    text(
                        "SELECT name FROM sqlite_master"
                        " WHERE type = 'trigger' AND tbl_name = 'incident'"
                    )
                )
            )
        assert triggers == {"incident_fts_insert", "incident_fts_update", "incident_fts_delete"}
    else:
        indexes = {index["name"] for index in inspect(engine).get_indexes("incident")}
        assert "ix_incident_title_words" in indexes
