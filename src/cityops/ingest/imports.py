"""File imports of observations: CSV or JSON → validated rows → the context store, in batches.

CSV columns: `device_id` (or `entity_id` and `type`), `attribute`, `value`, `unit` (optional),
`observed_at`. A device row goes through the device's attribute map (the attribute is the
payload key or the attribute name; a `unit` different from the one the device sends is
converted). An entity row is stored as given (numbers as numbers, `true`/`false` as booleans).
JSON: a list whose items are readings (`{"device_id": ..., "ts": ..., "<key>": value, ...}`) or
NGSI-LD entities (`{"id", "type", ...}`).

Each batch of `BATCH_ROWS` rows is one transaction and is recorded in the import ledger under the
file's SHA-256, so a re-run of the same file (after success or failure) skips what is already in.
Bad rows are reported by row number (CSV: the line, header = 1; JSON: the item, from 1) and
never written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from cityops.context import flows as context_flows
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.ingest import convert, flows, service
from cityops.ingest import readings as rd
from cityops.ingest.enums import ValueType
from cityops.ingest.models import Device

BATCH_ROWS = 1000
MAX_FILE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class BadRow:
    """A row that was not stored: where, and why (a message key and its parameters)."""

    row: int
    key: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ImportReport:
    """What an import did."""

    file_hash: str
    rows: int = 0
    batches: int = 0
    batches_skipped: int = 0
    rows_skipped: int = 0
    values_stored: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (not CSV/JSON, missing columns)."""

    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


# --- reading the file --------------------------------------------------------------------------

CSV_REQUIRED = ("attribute", "value", "observed_at")


def read_rows(path: Path, data: bytes) -> list[tuple[int, Any]]:
    """Return the file's rows as (row number, row): CSV dicts or JSON items."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFileError("ingest.import.bad_file", detail=str(exc)) from None
    if path.suffix.lower() == ".json":
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise ImportFileError("ingest.import.bad_file", detail=str(exc)) from None
        if isinstance(document, dict):
            document = [document]
        if not isinstance(document, list):
            raise ImportFileError("ingest.import.bad_file", detail="expected a JSON list")
        return [(number, item) for number, item in enumerate(document, start=1)]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = {name.strip() for name in reader.fieldnames or []}
    has_target = "device_id" in columns or {"entity_id", "type"} <= columns
    if not has_target or not set(CSV_REQUIRED) <= columns:
        raise ImportFileError("ingest.import.missing_columns")
    rows: list[tuple[int, Any]] = []
    for row in reader:
        # reader.line_num is the line the row ended on: its number for one-line rows.
        clean = {
            (k or "").strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items()
        }
        rows.append((reader.line_num, {"_csv": True, **clean}))
    return rows


def _csv_value(text: str, value_type: ValueType | None) -> Any:
    if value_type is ValueType.TEXT:
        return text
    lowered = text.lower()
    if value_type is ValueType.BOOLEAN or (value_type is None and lowered in ("true", "false")):
        return {"true": True, "false": False, "1": True, "0": False}.get(lowered, text)
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        return text
    return int(number) if value_type is None and number.is_integer() and "." not in text else number


def _csv_time(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


# --- turning rows into fragments ---------------------------------------------------------------


@dataclass(slots=True)
class _Fragments:
    """Fragments of one batch, merged per (entity, time), with the rows feeding each entity."""

    by_key: dict[tuple[str, str, int], dict[str, Any]] = field(default_factory=dict)
    rows_of: dict[tuple[str, str, int], list[int]] = field(default_factory=dict)
    values: dict[tuple[str, str, int], int] = field(default_factory=dict)

    def add(self, row: int, fragment: dict[str, Any], observed: str) -> None:
        entity_id = str(fragment["id"])
        names = [k for k in fragment if k not in ("id", "type", "@context")]
        round_ = 0
        # The same attribute twice at one time for one entity goes into a separate write.
        while True:
            key = (entity_id, observed, round_)
            found = self.by_key.get(key)
            if found is None:
                self.by_key[key] = dict(fragment)
                break
            if not any(name in found for name in names) and found.get("type") == fragment.get(
                "type"
            ):
                found.update({name: fragment[name] for name in names})
                break
            round_ += 1
        self.rows_of.setdefault(key, []).append(row)
        self.values[key] = self.values.get(key, 0) + len(names)


def _device_row(
    *,
    runtime: Runtime,
    number: int,
    row: dict[str, Any],
    device: Device,
    out: _Fragments,
    bad: list[BadRow],
) -> None:
    attributes = flows.compiled_attributes(runtime, device)
    name = str(row.get("attribute") or "")
    attr = attributes.get(name) or next((a for a in attributes.values() if a.name == name), None)
    if attr is None:
        bad.append(BadRow(number, "ingest.refused.unknown_key", {"field": name}))
        return
    observed_at = rd.parse_time(_csv_time(str(row.get("observed_at") or "")))
    if observed_at is None:
        bad.append(BadRow(number, "ingest.refused.bad_time", {"value": row.get("observed_at")}))
        return
    value = _csv_value(str(row.get("value") or ""), attr.type)
    unit = str(row.get("unit") or "") or None
    converted, refusal = rd.convert_value(attr, value, unit=unit)
    if refusal is not None:
        bad.append(BadRow(number, refusal.message_key, {"field": name, **refusal.params}))
        return
    observed = rd.iso(observed_at)
    fragment = {
        "id": device.entity_id,
        "type": device.entity_type,
        attr.name: rd.property_of(converted, unit_code=attr.unit_code, observed=observed),
    }
    out.add(number, fragment, observed)


def _entity_row(*, number: int, row: dict[str, Any], out: _Fragments, bad: list[BadRow]) -> None:
    for column in ("entity_id", "type", "attribute", "value", "observed_at"):
        if not row.get(column):
            bad.append(BadRow(number, "ingest.import.missing_field", {"field": column}))
            return
    observed_at = rd.parse_time(_csv_time(str(row["observed_at"])))
    if observed_at is None:
        bad.append(BadRow(number, "ingest.refused.bad_time", {"value": row["observed_at"]}))
        return
    observed = rd.iso(observed_at)
    unit = str(row.get("unit") or "") or None
    fragment = {
        "id": row["entity_id"],
        "type": row["type"],
        str(row["attribute"]): rd.property_of(
            _csv_value(str(row["value"]), None),
            unit_code=convert.unit_code(unit) if unit else None,
            observed=observed,
        ),
    }
    out.add(number, fragment, observed)


def _reading_row(
    *,
    runtime: Runtime,
    number: int,
    row: dict[str, Any],
    device: Device,
    out: _Fragments,
    bad: list[BadRow],
) -> None:
    if "ts" not in row and "observedAt" not in row:
        bad.append(BadRow(number, "ingest.import.missing_field", {"field": "ts"}))
        return
    reading = {k: v for k, v in row.items() if k not in ("device_id", "tenant")}
    outcome = rd.normalize(
        reading=reading,
        index=0,
        entity_id=device.entity_id,
        entity_type=device.entity_type,
        attributes=flows.compiled_attributes(runtime, device),
        now=runtime.clock.now(),
    )
    if outcome.refused:
        first = outcome.refused[0]
        bad.append(BadRow(number, first.message_key, {"field": first.key or "", **first.params}))
        return
    if outcome.fragment is not None and outcome.observed_at is not None:
        out.add(number, outcome.fragment, rd.iso(outcome.observed_at))


def _import_batch(
    *,
    runtime: Runtime,
    session: Session,
    tenant: str,
    rows: list[tuple[int, Any]],
    bad: list[BadRow],
) -> int:
    """Validate and write one batch; return how many values were stored."""
    pairs = {
        (tenant, str(row["device_id"]))
        for _, row in rows
        if isinstance(row, dict) and row.get("device_id")
    }
    devices = service.get_many(session=session, pairs=pairs)
    out = _Fragments()
    for number, row in rows:
        if not isinstance(row, dict):
            bad.append(BadRow(number, "ingest.import.bad_row"))
            continue
        if row.get("device_id"):
            device = devices.get((tenant, str(row["device_id"])))
            if device is None:
                bad.append(
                    BadRow(
                        number,
                        "ingest.import.unknown_device",
                        {"device_id": row["device_id"], "tenant": tenant},
                    )
                )
            elif row.get("_csv"):
                _device_row(
                    runtime=runtime, number=number, row=row, device=device, out=out, bad=bad
                )
            else:
                _reading_row(
                    runtime=runtime, number=number, row=row, device=device, out=out, bad=bad
                )
        elif row.get("_csv"):
            _entity_row(number=number, row=row, out=out, bad=bad)
        elif isinstance(row.get("id"), str) and isinstance(row.get("type"), str):
            observed = str(row.get("observedAt") or "")
            out.add(number, row, observed)
        else:
            bad.append(BadRow(number, "ingest.import.bad_row"))
    if not out.by_key:
        return 0
    keys = list(out.by_key)
    result = context_flows.write_entities(
        runtime=runtime,
        session=session,
        tenant=tenant,
        entities=[out.by_key[key] for key in keys],
        mode="upsert",
    )
    # A refused fragment is one entity at one time: only its rows are bad.
    refused = {keys[index] for index in result.failed}
    for index, error in sorted(result.failed.items()):
        detail = (error.get("error") or {}).get("detail") or ""
        for number in out.rows_of.get(keys[index], []):
            bad.append(BadRow(number, "ingest.refused.store_error", {"detail": detail}))
    return sum(count for key, count in out.values.items() if key not in refused)


def import_file(
    *,
    runtime: Runtime,
    path: Path,
    tenant: str = "default",
    batch_rows: int = BATCH_ROWS,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import a CSV or JSON file of observations, one committed batch at a time (resumable).

    `progress(done, total)` is called after each batch with row counts.
    """
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ImportFileError("ingest.import.bad_file", detail="larger than 512 MiB")
    data = path.read_bytes()
    file_hash = hashlib.sha256(data).hexdigest()
    rows = read_rows(path, data)
    report = ImportReport(file_hash=file_hash, rows=len(rows))
    with unit_of_work(runtime.session_factory) as session:
        done = service.get_import_batches(session=session, tenant=tenant, file_hash=file_hash)
    total = len(rows)
    # Batches are cut by row position, so a batch means the same rows on every run.
    for index, start in enumerate(range(0, total, batch_rows)):
        chunk = rows[start : start + batch_rows]
        if index in done:
            report.batches_skipped += 1
            report.rows_skipped += len(chunk)
        else:
            bad: list[BadRow] = []
            with unit_of_work(runtime.session_factory) as session:
                session.info["actor"] = SYSTEM_PRINCIPAL
                stored = _import_batch(
                    runtime=runtime, session=session, tenant=tenant, rows=chunk, bad=bad
                )
                service.create_import_batch(
                    session=session,
                    tenant=tenant,
                    file_hash=file_hash,
                    batch_index=index,
                    file_name=path.name,
                    rows=len(chunk),
                    stored=stored,
                    clock=runtime.clock,
                )
            report.batches += 1
            report.values_stored += stored
            report.bad_rows.extend(bad)
        if progress is not None:
            progress(min(start + batch_rows, total), total)
    report.bad_rows.sort(key=lambda b: b.row)
    return report


def describe(runtime: Runtime, bad: BadRow, lang: str) -> str:
    """Render a bad row's reason in a language."""
    params = {"field": "", **bad.params}
    return runtime.translate(bad.key, lang, **params)
