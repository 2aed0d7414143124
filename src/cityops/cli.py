"""The `cityops` command: serve, migrate, seed, demo, users, API keys and imports."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer

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
app.add_typer(user_app, name="user")
app.add_typer(apikey_app, name="apikey")
app.add_typer(import_app, name="import")


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
    workers: Annotated[int, typer.Option(help="Worker processes (PostgreSQL only).")] = 1,
) -> None:
    """Serve the web dashboard and the APIs."""
    import uvicorn

    settings = Settings()
    if workers > 1 and settings.database_url.startswith("sqlite"):
        _fail("several workers need PostgreSQL; SQLite serves one worker")
    uvicorn.run(
        "cityops.asgi:app",
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
        log_level=settings.log_level.lower(),
    )


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Migrate, seed the Đồng Nai profile, create the admin account, and serve."""
    from cityops.auth import flows as auth_flows
    from cityops.seed import seed as run_seed

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
    serve(host=host, port=port, workers=1)


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
        try:
            with unit_of_work(runtime.session_factory) as session:
                session.info["actor"] = SYSTEM_PRINCIPAL
                user = auth_service.create_user(
                    session=session, user_in=user_in, clock=runtime.clock, settings=runtime.settings
                )
        except DomainError as exc:
            _explain(runtime, exc)
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
        try:
            with unit_of_work(runtime.session_factory) as session:
                session.info["actor"] = SYSTEM_PRINCIPAL
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
        except DomainError as exc:
            _explain(runtime, exc)
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
        try:
            with unit_of_work(runtime.session_factory) as session:
                session.info["actor"] = SYSTEM_PRINCIPAL
                key, secret = auth_service.create_api_key(
                    session=session, key_in=key_in, clock=runtime.clock, created_by=None
                )
        except DomainError as exc:
            _explain(runtime, exc)
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
        try:
            with unit_of_work(runtime.session_factory) as session:
                session.info["actor"] = SYSTEM_PRINCIPAL
                result = units_flows.import_boundaries(
                    session=session, geojson=geojson, clock=runtime.clock
                )
        except DomainError as exc:
            _explain(runtime, exc)
        typer.echo("imported: " + ", ".join(f"{k}={v}" for k, v in result.items()))


def main() -> None:
    """Run the command line."""
    app()
