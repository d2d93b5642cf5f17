"""The layout of tests/ itself (README "Tests"): test modules live in area folders, no module imports a test
module or a conftest (shared helpers go to tests/support/, fixtures to conftests), and everything under
tests/e2e/ is marked ``slow`` so ``make test-fast`` never starts a stack of processes."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def forbidden_imports(source: str, filename: str = "<src>") -> list[str]:
    """Imports of a test module (``tests.<...>.test_*``) or of a conftest, in any form."""
    bad: list[str] = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ("." * node.level) + (node.module or "")
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.lstrip(".").split(".")
            is_ours = (
                name.startswith(".") or parts[0] in ("tests", "conftest") or parts[0].startswith("test_")
            )
            if is_ours and any(p == "conftest" or p.startswith("test_") for p in parts):
                bad.append(f"{filename}:{node.lineno}: {name}")
    return bad


def has_module_slow_mark(source: str) -> bool:
    """``pytestmark = pytest.mark.slow`` (or a list containing it) at module level."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
        ):
            values = node.value.elts if isinstance(node.value, ast.List | ast.Tuple) else [node.value]
            if any(ast.unparse(v) == "pytest.mark.slow" for v in values):
                return True
    return False


def test_no_module_imports_a_test_module_or_a_conftest():
    bad = [
        hit
        for path in sorted(TESTS.rglob("*.py"))
        for hit in forbidden_imports(path.read_text(), str(path.relative_to(TESTS.parent)))
    ]
    assert bad == []


def test_test_modules_live_in_area_folders():
    assert sorted(p.name for p in TESTS.glob("test_*.py")) == []


def test_every_e2e_module_is_slow():
    unmarked = [
        p.name for p in sorted((TESTS / "e2e").glob("test_*.py")) if not has_module_slow_mark(p.read_text())
    ]
    assert unmarked == []


def test_the_checks_see_what_they_forbid():
    src = (
        "from tests.api.test_api_jobs import setup_template\n"
        "from tests.conftest import make_settings\n"
        "import tests.e2e.test_e2e\n"
        "from .test_fleet_local import driver\n"
        "from tests.support.api import upload\n"
        "import test_things\n"
    )
    assert [h.split(": ", 1)[1] for h in forbidden_imports(src)] == [
        "tests.api.test_api_jobs",
        "tests.api.test_api_jobs.setup_template",
        "tests.conftest",
        "tests.conftest.make_settings",
        "tests.e2e.test_e2e",
        ".test_fleet_local",
        ".test_fleet_local.driver",
        "test_things",
    ]
    assert has_module_slow_mark("import pytest\npytestmark = pytest.mark.slow\n")
    assert has_module_slow_mark("import pytest\npytestmark = [pytest.mark.slow, pytest.mark.x]\n")
    assert not has_module_slow_mark("import pytest\n@pytest.mark.slow\ndef test_x(): pass\n")
