"""services/ is the application layer: no web framework in it, and every signature in plain types (README
"Where things live"). Checked from the source, like tests/test_architecture.py."""

from __future__ import annotations

import ast
import inspect
import typing
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[2] / "services"
MODULES = sorted(p.stem for p in SERVICES.glob("*.py") if p.stem != "__init__")


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("module", MODULES)
def test_no_web_framework_in_services(module):
    assert _imported_roots(SERVICES / f"{module}.py") & {"fastapi", "starlette", "api"} == set()


@pytest.mark.parametrize("module", MODULES)
def test_public_signatures_name_no_fastapi_or_temporal_type(module):
    import importlib

    mod = importlib.import_module(f"services.{module}")
    for name, fn in vars(mod).items():
        if name.startswith("_") or not inspect.isfunction(fn) or fn.__module__ != mod.__name__:
            continue
        hints = typing.get_type_hints(fn)
        for arg, hint in hints.items():
            text = f"{getattr(hint, '__module__', '')}.{hint!r}"
            assert "fastapi" not in text and "starlette" not in text and "temporalio" not in text, (
                f"services.{module}.{name}({arg}: {hint!r})"
            )


def test_the_check_sees_a_web_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from fastapi import Request\nimport starlette.requests\n")
    assert _imported_roots(bad) == {"fastapi", "starlette"}


def test_the_checks_above_see_the_services():
    assert {"jobs", "runs", "planning", "artifacts"} <= set(MODULES)
