"""``orch``: run the embedded stack, the worker, the API, migrations, the demo and backtests."""

from __future__ import annotations

import typer
from typer.core import TyperOption

# typer >= 0.2x labels on/off flags as "<bool>" in --help, which reads as if they took a value; a flag has no
# metavar.
_display_type = TyperOption.display_type_rich
TyperOption.display_type_rich = lambda self, ctx: None if self.is_flag else _display_type(self, ctx)  # type: ignore[method-assign]

app = typer.Typer(help="Carbon-aware batch orchestrator", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database migrations", no_args_is_help=True)
app.add_typer(db_app, name="db")


@app.command()
def dev(
    kill_stale: bool = typer.Option(
        False, "--kill-stale", help="Stop the processes of an earlier dev stack from this data dir first."
    ),
    stop: bool = typer.Option(
        False, "--stop", help="Stop the dev stack running from this data dir (e.g. from another shell)."
    ),
) -> None:
    """Run the whole embedded stack: SeaweedFS, Temporal dev server + UI, worker, API (Ctrl-C, SIGTERM,
    SIGHUP or `orch dev --stop` stop it)."""
    from cli.dev import run_dev_stack, stop_dev_stack

    raise typer.Exit(stop_dev_stack() if stop else run_dev_stack(kill_stale=kill_stale))


@app.command()
def worker() -> None:
    """Run one Temporal worker process."""
    import asyncio

    import worker as worker_mod
    from core.logs import setup_logging

    setup_logging()
    asyncio.run(worker_mod.main())


@app.command()
def api() -> None:
    """Run the API (uvicorn) on ORCH_API_HOST:ORCH_API_PORT."""
    import uvicorn

    from api.main import create_app
    from core.logs import setup_logging
    from core.settings import get_settings

    setup_logging()
    s = get_settings()
    uvicorn.run(create_app(s), host=s.api_host, port=s.api_port, log_config=None, access_log=False)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply Alembic migrations to ORCH_DATABASE_URL (default: SQLite in ORCH_DATA_DIR)."""
    from core.migrate import upgrade
    from core.settings import get_settings

    upgrade(get_settings(), revision)
    typer.echo("database is up to date")


def _register_optional() -> None:
    from cli.client import jobs_app, preview, runs_app
    from cli.demo import demo

    app.add_typer(jobs_app, name="jobs")
    app.add_typer(runs_app, name="runs")
    app.command("preview")(preview)

    app.command("demo")(demo)
    from cli.recurring import recurring_app, report_app  # issue 13

    app.add_typer(recurring_app, name="recurring")
    app.add_typer(report_app, name="report")
    from cli.artifacts import artifacts_app  # issue 19: a CLI for every resource
    from cli.clients_cmd import clients_app
    from cli.rerun import runs_rerun
    from cli.templates import templates_app
    from cli.webhooks import webhooks_app

    app.add_typer(clients_app, name="clients")
    app.add_typer(artifacts_app, name="artifacts")
    app.add_typer(templates_app, name="templates")
    app.add_typer(webhooks_app, name="webhooks")
    runs_app.command("rerun")(runs_rerun)
    from cli.recurring_update import recurring_update

    recurring_app.command("update")(recurring_update)

    from cli.carbon import carbon_app  # issue 18

    app.add_typer(carbon_app, name="carbon")
    try:
        from cli.backtest import backtest
    except ImportError:  # pragma: no cover - cli/backtest.py is added with the scheduling work
        return
    app.command("backtest")(backtest)


_register_optional()

if __name__ == "__main__":
    app()
