"""SQLite writers of one process queue on the engine's write gate instead of SQLite's busy loop;
the server processes sharing a file take turns through a lock file beside it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from cityops.core.db import WRITE_LOCK_SUFFIX, FileGate, create_db_engine


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    """A file SQLite database with one table."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'gate.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE item (id INTEGER PRIMARY KEY, writer INTEGER, n INTEGER)"))
    yield engine
    engine.dispose()


def _gate(engine: Engine) -> threading.Lock:
    with engine.connect() as conn:
        return type(conn.connection.dbapi_connection).gate  # type: ignore[union-attr]


def _write_at_once(engines: list[Engine], rows: int) -> list[BaseException]:
    """One thread per engine given (writer = its position), each writing `rows` transactions
    that read, insert and update; return what they raised."""
    failures: list[BaseException] = []

    def write(engine: Engine, writer: int) -> None:
        try:
            for n in range(rows):
                with engine.begin() as conn:
                    conn.execute(text("SELECT count(*) FROM item")).scalar()
                    conn.execute(
                        text("INSERT INTO item (writer, n) VALUES (:w, :n)"), {"w": writer, "n": n}
                    )
                    # A transaction that does more than one statement while holding the lock.
                    conn.execute(text("UPDATE item SET n = n WHERE writer = :w"), {"w": writer})
        except BaseException as exc:  # noqa: BLE001 - reported by the caller's assertion
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(e, w)) for w, e in enumerate(engines)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return failures


def test_concurrent_writers_all_commit_and_nothing_is_lost(engine: Engine) -> None:
    writers, rows = 12, 20
    failures = _write_at_once([engine] * writers, rows)
    assert not failures, failures
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM item")).scalar() == writers * rows
    assert not _gate(engine).locked()


def test_the_gate_is_given_back_on_rollback_and_when_a_connection_is_dropped(
    engine: Engine,
) -> None:
    gate = _gate(engine)
    held: list[bool] = []

    def failing_request() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO item (writer, n) VALUES (1, 1)"))
            held.append(gate.locked())
            raise RuntimeError("the request failed")

    with pytest.raises(RuntimeError):
        failing_request()
    assert held == [True]
    assert not gate.locked()
    # Checked in without a commit: the pool's reset rolls back.
    conn = engine.connect()
    conn.execute(text("INSERT INTO item (writer, n) VALUES (2, 2)"))
    assert gate.locked()
    conn.close()
    assert not gate.locked()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM item")).scalar() == 0


def test_readers_do_not_wait_for_a_writer(engine: Engine) -> None:
    writer = engine.connect()
    writer.execute(text("INSERT INTO item (writer, n) VALUES (1, 1)"))
    try:
        with engine.connect() as reader:
            # WAL: the reader sees the last committed state at once.
            assert reader.execute(text("SELECT count(*) FROM item")).scalar() == 0
    finally:
        writer.commit()
        writer.close()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM item")).scalar() == 1


# --- several processes (`cityops serve --workers N` on a SQLite file) --------------------------


def _file_free(path: str) -> bool:
    # Another open file, as another process would hold: closing it frees what it took.
    other = FileGate(Path(path))
    try:
        return other.try_acquire()
    finally:
        other.close()


def test_processes_sharing_a_file_take_turns_through_its_lock_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    # One engine per process: each has its own gate and its own open lock file.
    first, second = create_db_engine(url, shared=True), create_db_engine(url, shared=True)
    lock = f"{tmp_path / 'shared.db'}{WRITE_LOCK_SUFFIX}"
    try:
        with first.begin() as conn:
            conn.execute(
                text("CREATE TABLE item (id INTEGER PRIMARY KEY, writer INTEGER, n INTEGER)")
            )
        writing = first.connect()
        writing.execute(text("INSERT INTO item (writer, n) VALUES (0, 0)"))
        assert not _file_free(lock)  # held from the first write of the transaction
        writing.commit()
        writing.close()
        assert _file_free(lock)  # and given back with the commit

        # Four threads in each "process", all writing at once.
        failures = _write_at_once([first, second] * 4, 25)
        assert not failures, failures
        with second.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM item")).scalar() == 1 + 8 * 25
        assert _file_free(lock)
    finally:
        first.dispose()
        second.dispose()


def test_a_process_alone_takes_no_lock_file(engine: Engine, tmp_path: Path) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO item (writer, n) VALUES (1, 1)"))
    assert not (tmp_path / f"gate.db{WRITE_LOCK_SUFFIX}").exists()
