"""The layer rules of README "Where things live", checked from the source: every import statement of every
module (also imports inside functions, which hide cycles), as a graph of our modules and of our packages.

- core/ is infrastructure at the bottom: it imports none of api, services, activities, fleets, workflows,
  carbon, cli.
- scheduling/ is pure: no DB, HTTP, AWS, FastAPI or Temporal code, and nothing of ours but models/.
- workflows/ import only models/ and activities/ (for activity method references).
- No import cycle between packages, nor between the modules of one package.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [
    "api",
    "services",
    "activities",
    "workflows",
    "models",
    "carbon",
    "scheduling",
    "fleets",
    "core",
    "cli",
]
OURS = set(PACKAGES) | {"worker"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Absolute names this file imports (relative imports resolved against its package)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = _module_name(path).split(".")
    pkg = me if path.name == "__init__.py" else me[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    return {n for n in names if n}


def _graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES if (ROOT / pkg).is_dir() for p in (ROOT / pkg).rglob("*.py")]
    files.append(ROOT / "worker.py")
    modules = {_module_name(p): p for p in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path) if m in modules and m != name}
    return graph


def _external(pkg: str) -> set[str]:
    found: set[str] = set()
    for path in (ROOT / pkg).rglob("*.py"):
        found |= {n.split(".")[0] for n in _imports(path)}
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def _package_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for a, targets in graph.items():
        pa = a.split(".")[0]
        edges.setdefault(pa, set()).update(t.split(".")[0] for t in targets if t.split(".")[0] != pa)
    return edges


def test_core_is_the_bottom_layer():
    edges = _package_edges(_graph())
    assert (
        edges.get("core", set()) & {"api", "services", "activities", "fleets", "workflows", "carbon", "cli"}
        == set()
    )


def test_scheduling_is_pure():
    edges = _package_edges(_graph())
    assert edges.get("scheduling", set()) <= {"models"}, edges.get("scheduling")
    io = {
        "sqlalchemy",
        "httpx",
        "requests",
        "boto3",
        "botocore",
        "fastapi",
        "starlette",
        "temporalio",
        "psycopg",
    }
    assert _external("scheduling") & io == set()


def test_workflows_import_only_models_and_activities():
    assert _package_edges(_graph()).get("workflows", set()) <= {"models", "activities"}


def test_no_cycle_between_packages():
    edges = _package_edges(_graph())
    assert _cycle(edges) is None, " -> ".join(_cycle(edges) or [])


def test_no_cycle_between_modules():
    graph = _graph()
    # a package's __init__ re-exporting its own modules is not a cycle between modules
    within = {
        a: {b for b in bs if not a.startswith(b + ".") and not b.startswith(a + ".")}
        for a, bs in graph.items()
    }
    found = _cycle(within)
    assert found is None, " -> ".join(found or [])


def test_the_checker_sees_a_cycle_and_a_forbidden_edge():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    assert _package_edges({"core.x": {"api.y", "core.z"}}) == {"core": {"api"}}
