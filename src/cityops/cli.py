"""The `cityops` command: serve, migrate, seed, demo, users, API keys and imports."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from cityops.core import migrate as migrations
from cityops.core.config import Settings
from cityops.core.db import unit_of_work
from cityops.core.errors import DomainError, translate_error
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL

app = typer.Typer(
    help="CityOps: the Intelligent Operations Center for Đồng Nai.",
    no_args_is_help=True,
    add_completion=False,
)
user_app = typer.Typer(help="Manage user accounts.", no_args_is_help=True)
apikey_app = typer.Typer(help="Manage API keys for machines.", no_args_is_help=True)
import_app = typer.Typer(help="Import data files.", no_args_is_help=True)
device_app = typer.Typer(help="Manage ingest devices and their keys.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(apikey_app, name="apikey")
app.add_typer(import_app, name="import")
app.add_typer(device_app, name="device")
rules_app = typer.Typer(help="Manage alert rules.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
contexts_app = typer.Typer(
    help="Manage JSON-LD context documents (offline use).", no_args_is_help=True
)
app.add_typer(contexts_app, name="contexts")
kpi_app = typer.Typer(help="KPI engine data: yearly sector statistics.", no_args_is_help=True)
app.add_typer(kpi_app, name="kpi")


@contextmanager
def _runtime() -> Iterator[Runtime]:
    """The runtime for one command; its database connections are closed when the command ends."""
    from cityops.app import build_runtime

    try:
        settings = Settings()
    except ValueError as exc:
        _fail(str(exc))
    runtime = build_runtime(settings)
    try:
        yield runtime
    finally:
        runtime.engine.dispose()


def _fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _explain(runtime: Runtime, exc: DomainError) -> NoReturn:
    lang = runtime.settings.default_language
    lines = [runtime.translate(exc.key or exc.title_key, lang, **exc.params)]
    for error in exc.errors:
        rendered = translate_error(error, runtime.translate, lang)
        lines.append(f"  {rendered.get('field', '')}: {rendered.get('message', '')}")
    _fail("\n".join(lines))


@contextmanager
def _system_work(runtime: Runtime) -> Iterator[Session]:
    """One transaction on behalf of the command line; a domain error is explained, exit 2."""
    try:
        with unit_of_work(runtime.session_factory) as session:
            session.info["actor"] = SYSTEM_PRINCIPAL
            yield session
    except DomainError as exc:
        _explain(runtime, exc)


def _read_password_stdin() -> str:
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        _fail("no password on standard input")
    return password


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema to the newest version."""
    with _runtime() as runtime:
        migrations.upgrade(runtime.engine)
        typer.echo(f"database at revision {migrations.current_revision(runtime.engine)}")


@app.command()
def seed(
    profile: Annotated[
        str | None, typer.Option(help="Profile to load (default: settings).")
    ] = None,
) -> None:
    """Load the profile's reference data (units, areas, departments); safe to run again."""
    from cityops.seed import seed as run_seed

    with _runtime() as runtime:
        _require_migrated(runtime)
        counts = run_seed(runtime, profile=profile)
        typer.echo("seeded: " + ", ".join(f"{k}={v}" for k, v in counts.items()))


def _require_migrated(runtime: Runtime) -> None:
    if migrations.current_revision(runtime.engine) != migrations.head_revision():
        _fail("the database is not at the current schema: run `cityops migrate` first")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Worker processes (PostgreSQL, or a SQLite file: they take turns writing it).",
        ),
    ] = 1,
    access_log: Annotated[
        bool,
        typer.Option(
            help="Log a line per request (off: the request metrics and logs of errors remain, "
            "and each request costs less CPU)."
        ),
    ] = True,
) -> None:
    """Serve the web dashboard and the APIs."""
    import uvicorn

    settings = Settings()
    if workers > 1 and make_url(settings.database_url).database in (None, "", ":memory:"):
        _fail("several workers need a database they can share: PostgreSQL or a SQLite file")
    # The workers read their settings from the environment: tell them how many share the
    # database (on SQLite they then send each other their events and take turns writing).
    os.environ["CITYOPS_WORKERS"] = str(workers)
    uvicorn.run(
        "cityops.asgi:app",
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
        log_level=settings.log_level.lower(),
        access_log=access_log,
        # Live streams (SSE) stay open for minutes: on shutdown give them 5 s, then close them
        # (clients reconnect and resume), rather than waiting for every dashboard to leave.
        timeout_graceful_shutdown=5,
    )


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Migrate, seed, create the admin account, back-fill demo data, and serve with live data."""
    import subprocess

    from cityops.alerts import flows as alert_flows
    from cityops.auth import flows as auth_flows
    from cityops.kpi import jobs as kpi_jobs
    from cityops.seed import seed as run_seed
    from cityops.simulate import commands as simulate_commands

    with _runtime() as runtime:
        migrations.upgrade(runtime.engine)
        counts = run_seed(runtime)
        with unit_of_work(runtime.session_factory) as session:
            session.info["actor"] = SYSTEM_PRINCIPAL
            password = auth_flows.ensure_admin(
                session=session, settings=runtime.settings, clock=runtime.clock
            )
        url = f"http://{host}:{port}"
        typer.echo("")
        typer.secho("CityOps — Trung tâm giám sát, điều hành thông minh Đồng Nai", bold=True)
        typer.echo("  data: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
        typer.echo(f"  database: {runtime.settings.public_dict()['database_url']}")
        typer.echo(f"  open:     {url}/")
        typer.echo(f"  API docs: {url}/api/v1/docs")
        if password:
            typer.secho(f"  login:    admin / {password}", fg=typer.colors.GREEN, bold=True)
            typer.echo("  (shown once: keep it; reset with `cityops user set-password admin`)")
        else:
            typer.echo("  login:    admin (password as printed on the first run; to reset it:")
            typer.echo("            .venv/bin/cityops user set-password admin --password-stdin)")
        typer.echo("  Ctrl-C stops.")
        typer.echo("")
        # No evaluator thread runs here: the back-fill's observations are evaluated as they
        # come, so the demo opens with the alerts (and incidents) of its history.
        story = runtime.clock.now()
        with alert_flows.engine_of(runtime).draining():
            simulator = simulate_commands.demo_prepare(runtime, typer.echo, story)
        # KPI pages open with values and trends: the hourly job first runs an hour after start.
        typer.echo(f"  KPI:      {kpi_jobs.compute_recent(runtime)} values computed")
        mqtt = runtime.settings.mqtt_bridge
    typer.echo(f"  live:     {simulator} via {'MQTT' if mqtt else 'HTTP'}")
    # The simulator runs beside the server as a child process and stops with it.
    # The command is this interpreter running cityops with fixed arguments: nothing untrusted.
    child = subprocess.Popen(simulate_commands.demo_command(url, mqtt=mqtt, story=story))  # noqa: S603
    try:
        serve(host=host, port=port, workers=1)
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=10)


def _aware(moment: datetime) -> datetime:
    """Read a naive time as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@app.command()
def simulate(
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same data.")] = 42,
    rate: Annotated[
        int, typer.Option(min=1, help="Multiply stations and road segments (benchmarks).")
    ] = 1,
    via: Annotated[str, typer.Option(help="mqtt, http or direct (context store).")] = "http",
    url: Annotated[str, typer.Option(help="Server for --via http.")] = "http://127.0.0.1:8000",
    tenant: Annotated[str, typer.Option(help="NGSI-LD tenant.")] = "default",
    backfill: Annotated[
        str | None,
        typer.Option(help="Write this much history first (e.g. 3d, 30d), then stop."),
    ] = None,
    step: Annotated[str, typer.Option(help="Time step of the back-fill.")] = "1h",
    duration: Annotated[
        str | None, typer.Option(help="Stream for this long (e.g. 10m); default: until Ctrl-C.")
    ] = None,
    speed: Annotated[
        float, typer.Option(min=0.01, help="Emit this many times faster than real intervals.")
    ] = 1.0,
    provision: Annotated[
        bool, typer.Option("--provision", help="Create the devices and static entities.")
    ] = False,
    story: Annotated[
        str | None,
        typer.Option(help="Play the demo's storyline anchored at this ISO 8601 time."),
    ] = None,
) -> None:
    """Stream realistic Đồng Nai sensor data (air, water, traffic, facilities) into CityOps."""
    from cityops.simulate import commands as simulate_commands

    try:
        options = simulate_commands.SimulateOptions(
            seed=seed,
            rate=rate,
            via=via,
            url=url,
            tenant=tenant,
            backfill=None if backfill is None else simulate_commands.parse_duration(backfill),
            step=simulate_commands.parse_duration(step),
            duration=None if duration is None else simulate_commands.parse_duration(duration),
            speed=speed,
            provision=provision,
            story=None if story is None else _aware(datetime.fromisoformat(story)),
        )
    except ValueError as exc:
        _fail(str(exc))
    if via not in ("mqtt", "http", "direct"):
        _fail("--via must be mqtt, http or direct")
    with _runtime() as runtime:
        _require_migrated(runtime)
        try:
            simulate_commands.simulate(runtime, options, typer.echo)
        except DomainError as exc:
            _explain(runtime, exc)


@user_app.command("create")
def user_create(
    username: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[
        str,
        typer.Option(help="admin, leader, operator, department_officer, unit_officer or viewer."),
    ],
    unit: Annotated[str | None, typer.Option(help="Unit code the user is scoped to.")] = None,
    department: Annotated[
        str | None, typer.Option(help="Department code the user is scoped to.")
    ] = None,
    full_name: Annotated[str | None, typer.Option(help="Full name.")] = None,
    email: Annotated[str | None, typer.Option(help="E-mail address.")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create a user account."""
    from pydantic import ValidationError

    from cityops.auth import service as auth_service
    from cityops.auth.schemas import UserCreate

    if not password_stdin:
        _fail("give the password on standard input with --password-stdin")
    password = _read_password_stdin()
    with _runtime() as runtime:
        try:
            user_in = UserCreate(
                username=username,
                password=password,
                full_name=full_name or username,
                role=role,
                unit_code=unit,
                department_code=department,
                email=email,
            )
        except ValidationError as exc:
            _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
        with _system_work(runtime) as session:
            user = auth_service.create_user(
                session=session, user_in=user_in, clock=runtime.clock, settings=runtime.settings
            )
        typer.echo(f"created user {user.username} (id {user.id}, role {user.role})")


@user_app.command("set-password")
def user_set_password(
    username: Annotated[str, typer.Argument(help="Login name.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Set a user's password."""
    from cityops.auth import service as auth_service

    if not password_stdin:
        _fail("give the password on standard input with --password-stdin")
    password = _read_password_stdin()
    with _runtime() as runtime:
        with _system_work(runtime) as session:
            user = auth_service.get_by_username(session=session, username=username)
            if user is None:
                _fail(f"no user named {username!r}")
            auth_service.set_password(
                session=session,
                user=user,
                password=password,
                settings=runtime.settings,
                clock=runtime.clock,
            )
        typer.echo(f"password changed for {username}")


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Argument(help="What the key is for (a device, a system).")],
    scope: Annotated[list[str], typer.Option(help="A permission the key holds (repeatable).")],
    unit: Annotated[str | None, typer.Option(help="Unit code the key is scoped to.")] = None,
    department: Annotated[
        str | None, typer.Option(help="Department code the key is scoped to.")
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="NGSI-LD tenant the key may use.")] = None,
) -> None:
    """Create an API key; the key is printed once and stored only as a hash."""
    from pydantic import ValidationError

    from cityops.auth import service as auth_service
    from cityops.auth.schemas import ApiKeyCreate

    with _runtime() as runtime:
        try:
            key_in = ApiKeyCreate(
                name=name,
                permissions=scope,
                unit_code=unit,
                department_code=department,
                tenant=tenant,
            )
        except ValidationError as exc:
            _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
        with _system_work(runtime) as session:
            key, secret = auth_service.create_api_key(
                session=session, key_in=key_in, clock=runtime.clock, created_by=None
            )
        typer.echo(f"created API key {key.id} ({name}); send it as the X-API-Key header:")
        typer.secho(secret, bold=True)
        typer.echo("(shown once: it is stored only as a hash)")


@import_app.command("boundaries")
def import_boundaries(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="A GeoJSON FeatureCollection.")
    ],
) -> None:
    """Replace the demo boundaries with official ones (all or nothing)."""
    from cityops.units import flows as units_flows

    with _runtime() as runtime:
        try:
            geojson = json.loads(file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            _fail(f"{file} is not a JSON file: {exc}")
        with _system_work(runtime) as session:
            result = units_flows.import_boundaries(
                session=session, geojson=geojson, clock=runtime.clock
            )
        typer.echo("imported: " + ", ".join(f"{k}={v}" for k, v in result.items()))


@import_app.command("observations")
def import_observations(
    file: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, help="A CSV or JSON file of observations."),
    ],
    tenant: Annotated[str, typer.Option(help="NGSI-LD tenant to write to.")] = "default",
) -> None:
    """Import observations in batches; a re-run of the same file adds nothing twice."""
    from rich.progress import Progress

    from cityops.ingest import imports

    with _runtime() as runtime:
        _require_migrated(runtime)
        lang = runtime.settings.default_language
        with Progress(transient=True) as bar:
            task = bar.add_task(file.name, total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            try:
                report = imports.import_file(
                    runtime=runtime, path=file, tenant=tenant, progress=advance
                )
            except imports.ImportFileError as exc:
                _fail(runtime.translate(exc.key, lang, **exc.params))
        typer.echo(
            f"rows: {report.rows}, values stored: {report.values_stored}, "
            f"batches: {report.batches} new, {report.batches_skipped} already imported "
            f"({report.rows_skipped} rows skipped), bad rows: {len(report.bad_rows)}"
        )
        for bad in report.bad_rows[:200]:
            typer.echo(f"  row {bad.row}: {imports.describe(runtime, bad, lang)}")
        if len(report.bad_rows) > 200:
            typer.echo(f"  ... and {len(report.bad_rows) - 200} more")


@import_app.command("programme")
def import_programme(
    files: Annotated[
        list[Path],
        typer.Argument(
            exists=True,
            help="An XLSX workbook, CSV files (items.csv, budget.csv, ...) or a folder of them.",
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check and report; write nothing.")
    ] = False,
) -> None:
    """Import the smart-city programme (phases, items, budget, milestones): all or nothing."""
    from rich.progress import Progress

    from cityops.programme import flows as programme_flows

    stages = ("read", "check", "write", "done")
    with _runtime() as runtime:
        _require_migrated(runtime)
        with Progress(transient=True) as bar, _system_work(runtime) as session:
            task = bar.add_task("programme", total=len(stages) - 1)

            def advance(stage: str) -> None:
                bar.update(task, completed=stages.index(stage), description=stage)

            result = programme_flows.import_paths(
                session=session, paths=files, clock=runtime.clock, progress=advance
            )
            if dry_run:
                session.rollback()
        lang = runtime.settings.default_language
        typer.echo(
            ("dry run, nothing written; " if dry_run else "") + "rows: " + _pairs(result.rows)
        )
        for outcome in ("created", "updated", "unchanged", "deleted", "skipped"):
            counts = getattr(result, outcome)
            if any(counts.values()):
                typer.echo(f"{outcome}: {_pairs(counts)}")
        for warning in result.warnings[:200]:
            where = ", ".join(
                part
                for part in (
                    warning.sheet,
                    f"row {warning.row}" if warning.row else "",
                    f"column {warning.column}" if warning.column else "",
                )
                if part
            )
            message = runtime.translate(warning.key, lang, **warning.params)
            typer.echo(f"  warning ({where}): {message}")


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in counts.items())


@import_app.command("dossiers")
def import_dossiers(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, help="A CSV, XLSX or JSON file of dossiers (hồ sơ)."
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row and count; write nothing.")
    ] = False,
    update: Annotated[
        bool, typer.Option("--update", help="Update dossiers already stored that changed.")
    ] = False,
) -> None:
    """Import administrative-procedure dossiers; good rows are kept, bad rows listed."""
    from rich.progress import Progress

    from cityops.egov import imports as egov_imports

    with _runtime() as runtime:
        _require_migrated(runtime)
        lang = runtime.settings.default_language
        with Progress(transient=True) as bar:
            task = bar.add_task(file.name, total=None)

            def advance(done: int, total: int | None) -> None:
                bar.update(task, completed=done, total=total)

            try:
                report = egov_imports.import_file(
                    runtime=runtime,
                    path=file,
                    principal=SYSTEM_PRINCIPAL,
                    update=update,
                    dry_run=dry_run,
                    progress=advance,
                )
            except DomainError as exc:
                _explain(runtime, exc)
        typer.echo(
            f"{'dry run: ' if dry_run else ''}rows: {report.rows}, imported: {report.imported}, "
            f"updated: {report.updated}, skipped: {report.skipped}, refused: {report.rejected}"
        )
        if report.previous_runs:
            runs = ", ".join(f"#{run}" for run in report.previous_runs)
            typer.echo(f"this content was imported before (runs {runs}): known dossiers skipped")
        if report.ignored_columns:
            typer.echo("columns ignored: " + ", ".join(report.ignored_columns))
        for bad in report.errors[:200]:
            where = f"line {bad.line}" + (f", {bad.column}" if bad.column else "")
            shown = f" ({bad.value})" if bad.value is not None else ""
            typer.echo(f"  {where}{shown}: {egov_imports.describe(runtime, bad, lang)}")
        if len(report.errors) > 200:
            typer.echo(f"  ... and {len(report.errors) - 200} more")


@kpi_app.command("import-statistics")
def kpi_import_statistics(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            help="CSV or XLSX: unit_code, year, name, value[, source] per row.",
        ),
    ],
) -> None:
    """Import yearly sector statistics; one bad row refuses the file (every one listed)."""
    from cityops.kpi import statistics

    with _runtime() as runtime:
        _require_migrated(runtime)
        with _system_work(runtime) as session:
            report = statistics.import_file(
                session=session,
                clock=runtime.clock,
                file_name=file.name,
                data=file.read_bytes(),
            )
        typer.echo(
            f"rows: {report.rows}, imported: {report.imported}, updated: {report.updated}, "
            f"unchanged: {report.unchanged}"
        )


@device_app.command("create")
def device_create(
    device_id: Annotated[str, typer.Argument(help="Device id (unique in its tenant).")],
    entity_type: Annotated[str, typer.Option(help="Type of the entity it feeds.")],
    attributes: Annotated[
        str, typer.Option(help="Attribute map as JSON: [{key, attribute, unit_code, ...}].")
    ],
    name: Annotated[str | None, typer.Option(help="Name (default: the device id).")] = None,
    entity_id: Annotated[str | None, typer.Option(help="Entity id (default: derived).")] = None,
    tenant: Annotated[str, typer.Option(help="NGSI-LD tenant.")] = "default",
    lat: Annotated[float | None, typer.Option(help="Latitude.")] = None,
    lon: Annotated[float | None, typer.Option(help="Longitude.")] = None,
    unit: Annotated[str | None, typer.Option(help="Unit code (default: from lat/lon).")] = None,
    department: Annotated[str | None, typer.Option(help="Owner department code.")] = None,
    interval: Annotated[int, typer.Option(help="Expected reporting interval (s).")] = 300,
) -> None:
    """Register a device; its key is printed once and stored only as a hash."""
    from pydantic import ValidationError

    from cityops.ingest import flows as ingest_flows
    from cityops.ingest.schemas import DeviceCreate

    with _runtime() as runtime:
        _require_migrated(runtime)
        try:
            device_in = DeviceCreate(
                device_id=device_id,
                tenant=tenant,
                name=name or device_id,
                entity_type=entity_type,
                entity_id=entity_id,
                lat=lat,
                lon=lon,
                unit_code=unit,
                department_code=department,
                interval_seconds=interval,
                attributes=json.loads(attributes),
            )
        except (ValidationError, ValueError) as exc:
            _fail(str(exc))
        with _system_work(runtime) as session:
            device, key = ingest_flows.create_device(
                runtime=runtime, session=session, device_in=device_in
            )
        typer.echo(
            f"created device {device.device_id} (id {device.id}, tenant {device.tenant}, "
            f"entity {device.entity_id}, unit {device.unit_code or '-'}); its key:"
        )
        typer.secho(key, bold=True)
        typer.echo("(shown once: it is stored only as a hash)")


@device_app.command("list")
def device_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
) -> None:
    """List devices with their state."""
    from cityops.core.security import GLOBAL_SCOPE
    from cityops.ingest import service as ingest_service

    with _runtime() as runtime:
        _require_migrated(runtime)
        with unit_of_work(runtime.session_factory) as session:
            devices, total = ingest_service.get_all(
                session=session, scope=GLOBAL_SCOPE, tenant=tenant, limit=10_000
            )
            for d in devices:
                seen = d.last_seen_at.isoformat() if d.last_seen_at else "never"
                typer.echo(f"{d.id}\t{d.tenant}\t{d.device_id}\t{d.status}\t{seen}\t{d.entity_id}")
        typer.echo(f"{total} device(s)")


@contexts_app.command("preload")
def contexts_preload(
    url: Annotated[str, typer.Argument(help="The URL clients will name in their @context.")],
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="The context document (JSON-LD).")
    ],
) -> None:
    """Store a JSON-LD context under its URL, so it resolves without the internet."""
    from cityops.context import flows as context_flows

    with _runtime() as runtime:
        _require_migrated(runtime)
        try:
            document = json.loads(file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            _fail(f"{file} is not a JSON file: {exc}")
        with _system_work(runtime) as session:
            context_flows.preload_context(
                session=session, url=url, document=document, clock=runtime.clock
            )
    typer.echo(f"preloaded {url}")


@rules_app.command("import")
def rules_import(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="A YAML file of rules.")
    ],
) -> None:
    """Import alert rules (all or nothing): new codes are created, known codes replaced."""
    from cityops.alerts import flows as alerts_flows

    with _runtime() as runtime:
        _require_migrated(runtime)
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            _fail(f"{file} is not UTF-8 text: {exc}")
        refused: DomainError | None = None
        with _system_work(runtime) as session:
            try:
                result = alerts_flows.import_rules(runtime=runtime, session=session, text=text)
            except DomainError as exc:
                # Refused before anything was written: explained rule by rule below.
                refused = exc
        if refused is not None:
            lang = runtime.settings.default_language
            lines = [runtime.translate(refused.key or refused.title_key, lang, **refused.params)]
            for error in refused.errors:
                rendered = translate_error(error, runtime.translate, lang)
                code = f" ({rendered['code']})" if rendered.get("code") else ""
                lines.append(f"  {rendered.get('field', '')}{code}: {rendered.get('message', '')}")
            _fail("\n".join(lines))
        typer.echo(
            f"rules: {len(result.created)} created, {len(result.updated)} updated, "
            f"{len(result.unchanged)} unchanged"
        )


def main() -> None:
    """Run the command line."""
    app()
