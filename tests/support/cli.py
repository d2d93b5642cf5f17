"""The `orch` CLI run in-process (typer's CliRunner) against a live API URL, for the CLI tests."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cli import app as orch_app


def orch(url: str, key: str | None, *args: str, admin: str | None = None, columns: int = 250):
    env = {"ORCH_URL": url, "ORCH_API_KEY": key, "ORCH_ADMIN_API_KEY": admin, "COLUMNS": str(columns)}
    return CliRunner().invoke(orch_app, list(args), env=env, catch_exceptions=False)


def js(result) -> dict | list:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)
