#!/usr/bin/env python3
"""Validate docker-compose.yml without a Docker engine.

    python scripts/compose_check.py [docker-compose.yml] [--schema deploy/compose-spec.json]
                                    [--docs docs/production.md]

1. Parse the YAML (anchors and merge keys as Compose does; duplicate keys are an error, as in Compose).
2. Interpolate ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``, ``$$`` ... like Compose, with a placeholder
   for every variable that has no default, and validate the result against the official Compose
   Specification JSON schema (vendored in deploy/compose-spec.json; see deploy/README.md).
3. Our own rules (one message each, "service: problem"):
   - every ``depends_on`` target exists; ``service_healthy`` targets have a healthcheck;
     ``service_completed_successfully`` targets are one-shot (``restart: "no"``);
   - every variable used without a default is documented in docs/production.md;
   - api, worker and migrate run the same image from the same build;
   - only api and temporal-ui publish ports, and nothing publishes PostgreSQL (5432) or Temporal's
     gRPC / internal ports (7233-7235, 7239, 6933-6939), nor uses the host network;
   - the worker can be scaled (no container_name, no published ports);
   - every ``ORCH_*`` name (environment keys and interpolated variables) is a field of
     ``core.settings.Settings``, and the api/worker environment builds a valid ``ORCH_ENV=prod`` Settings
     that talks to AWS S3 (empty endpoint) with boto3's default credential chain;
   - third-party images are pinned (a tag other than ``latest``, or a digest);
   - bind-mounted files, the build context and the Dockerfile exist.

Exit status 0 when the file passes, 1 with one line per problem otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SCHEMA = ROOT / "deploy" / "compose-spec.json"
DEFAULT_DOCS = ROOT / "docs" / "production.md"

APP_SERVICES = ("api", "worker", "migrate")  # one image, one build
PUBLISHERS = {"api", "temporal-ui"}  # the only services allowed to publish ports
FORBIDDEN_PORTS = {
    5432: "PostgreSQL",
    7233: "Temporal frontend gRPC",
    7234: "Temporal history",
    7235: "Temporal matching",
    7239: "Temporal worker service",
    **{p: "Temporal membership" for p in range(6933, 6940)},
}
PLACEHOLDER = "compose-check-placeholder-0123456789abcdef"  # >= 32 chars: passes length rules

# ---------------------------------------------------------------------------------------------- YAML


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader (merge keys included) that refuses duplicate mapping keys, as Compose does."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    loader.flatten_mapping(node)
    return dict(loader.construct_pairs(node, deep=deep))


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass


# ------------------------------------------------------------------------------------- interpolation

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_PLAIN = re.compile(_NAME)
_BRACED = re.compile(r"^(?P<name>" + _NAME + r")(?:(?P<op>:-|-|:\?|\?|:\+|\+)(?P<arg>.*))?$", re.S)


@dataclass
class VarUse:
    name: str
    op: str | None  # None (plain), ":-", "-", ":?", "?", ":+", "+"
    arg: str
    where: str

    @property
    def has_default(self) -> bool:
        return self.op in (":-", "-", ":+", "+")


class InterpolationError(ValueError):
    pass


def _closing_brace(s: str, start: int) -> int:
    """Index of the ``}`` closing the ``${`` whose body starts at ``start`` (nested ``${...}`` allowed)."""
    depth, i = 1, start
    while i < len(s):
        if s.startswith("$$", i):
            i += 2
            continue
        if s.startswith("${", i):
            depth += 1
            i += 2
            continue
        if s[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def interpolate(value: str, env: dict[str, str], where: str = "", uses: list[VarUse] | None = None) -> str:
    """Compose-style interpolation of one string: ``$$``, ``$VAR``, ``${VAR}`` and ``${VAR<op>arg}`` with
    op one of ``:-`` ``-`` ``:?`` ``?`` ``:+`` ``+``; ``arg`` may itself hold ``${...}``."""
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch != "$" or i + 1 == len(value):
            out.append(ch)
            i += 1
            continue
        nxt = value[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
            continue
        if nxt == "{":
            close = _closing_brace(value, i + 2)
            if close < 0:
                raise InterpolationError(f"{where}: unterminated ${{ in {value!r}")
            out.append(_braced(value[i + 2 : close], env, where, uses))
            i = close + 1
            continue
        m = _PLAIN.match(value, i + 1)
        if m:
            if uses is not None:
                uses.append(VarUse(m.group(0), None, "", where))
            out.append(env.get(m.group(0), ""))
            i = m.end()
            continue
        raise InterpolationError(
            f"{where}: invalid interpolation format in {value!r} (use $$ for a literal $)"
        )
    return "".join(out)


def _braced(inner: str, env: dict[str, str], where: str, uses: list[VarUse] | None) -> str:
    b = _BRACED.match(inner)
    if not b:
        raise InterpolationError(f"{where}: invalid interpolation ${{{inner}}}")
    name, op, arg = b.group("name"), b.group("op"), b.group("arg") or ""
    if uses is not None:
        uses.append(VarUse(name, op, arg, where))
        if arg:  # record variables nested in the argument even when it is not evaluated
            interpolate(arg, _EveryVarSet(), where, uses)
    val = env.get(name)
    if op in (":-", "-"):
        unset = val is None or (op == ":-" and val == "")
        return interpolate(arg, env, where) if unset else val  # type: ignore[return-value]
    if op in (":?", "?"):
        if val is None or (op == ":?" and val == ""):
            raise InterpolationError(f"{where}: required variable {name} is missing a value: {arg}")
        return val
    if op in (":+", "+"):
        present = val is not None and (op == "+" or val != "")
        return interpolate(arg, env, where) if present else ""
    return val or ""


def _walk_strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk_strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk_strings(v, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


class _EveryVarSet(dict):
    """An environment in which every variable has a value (so ``:?`` never stops the walk)."""

    def get(self, key, default=None):
        return PLACEHOLDER


def collect_vars(doc: Any) -> list[VarUse]:
    """Every variable use in the file (nested defaults included). Raises InterpolationError on bad syntax."""
    uses: list[VarUse] = []
    for where, s in _walk_strings(doc):
        interpolate(s, _EveryVarSet(), where, uses)
    return uses


def interpolate_doc(doc: Any, env: dict[str, str]) -> Any:
    def rec(node: Any, path: str) -> Any:
        if isinstance(node, dict):
            return {k: rec(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [rec(v, f"{path}[{i}]") for i, v in enumerate(node)]
        if isinstance(node, str):
            return interpolate(node, env, path)
        return node

    return rec(doc, "")


def placeholder_env(uses: list[VarUse]) -> dict[str, str]:
    """A value for every variable that has no default; those with a default keep it (unset here)."""
    return {u.name: PLACEHOLDER for u in uses if not u.has_default}


# --------------------------------------------------------------------------------------------- checks


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)

    def add(self, msg: str) -> None:
        self.problems.append(msg)


def schema_errors(doc: Any, schema: dict) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft7Validator(schema)
    out = []
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        path = ".".join(str(p) for p in err.absolute_path) or "(root)"
        out.append(f"schema: {path}: {err.message}")
    return out


def _depends_on(svc: dict) -> dict[str, dict]:
    dep = svc.get("depends_on") or {}
    if isinstance(dep, list):
        return {name: {"condition": "service_started"} for name in dep}
    return dep


def _env(svc: dict) -> dict[str, str | None]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        out: dict[str, str | None] = {}
        for item in env:
            k, sep, v = str(item).partition("=")
            out[k] = v if sep else None
        return out
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def _published(svc: dict) -> list[tuple[str, int | None]]:
    """(spec as written, container port) for each published port."""
    out = []
    for p in svc.get("ports") or []:
        if isinstance(p, dict):
            target = p.get("target")
            out.append((json.dumps(p), int(str(target)) if str(target).isdigit() else None))
            continue
        spec = str(p)
        body = spec.split("/", 1)[0]
        target = body.rsplit(":", 1)[-1]
        first = target.split("-", 1)[0]
        out.append((spec, int(first) if first.isdigit() else None))
    return out


def _has_healthcheck(svc: dict, base_dir: Path) -> bool:
    hc = svc.get("healthcheck")
    if isinstance(hc, dict):
        if hc.get("disable"):
            return False
        test = hc.get("test")
        if test and test != ["NONE"]:
            return True
    build = svc.get("build")
    if build is not None:  # a HEALTHCHECK in the Dockerfile counts
        dockerfile = _build_paths(build, base_dir)[1]
        if not dockerfile.is_file():
            return False
        return bool(re.search(r"^HEALTHCHECK\s+(?!NONE)", dockerfile.read_text(), re.M))
    return False


def _build_paths(build: Any, base_dir: Path) -> tuple[Path, Path]:
    if isinstance(build, str):
        ctx = base_dir / build
        return ctx, ctx / "Dockerfile"
    ctx = base_dir / build.get("context", ".")
    return ctx, ctx / build.get("dockerfile", "Dockerfile")


def _settings_fields() -> set[str]:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from core.settings import Settings

    return {f"ORCH_{name.upper()}" for name in Settings.model_fields}


def _build_settings(env: dict[str, str | None]) -> Any:
    """core.settings.Settings from exactly this environment: ``model_validate`` runs every field and model
    validator but reads no other source, so the checking process's own ORCH_* variables do not leak in."""
    from core.settings import Settings

    values = {k[len("ORCH_") :].lower(): v for k, v in env.items() if k.startswith("ORCH_") and v is not None}
    return Settings.model_validate(values)


def check(text: str, *, base_dir: Path, docs_text: str, schema: dict | None) -> list[str]:
    """All checks on one compose file's text; returns the problems (empty = OK)."""
    r = Report()
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as exc:
        return [f"yaml: {exc}"]
    if not isinstance(raw, dict) or not isinstance(raw.get("services"), dict):
        return ["yaml: not a Compose file (no services mapping)"]

    # variables
    try:
        uses = collect_vars(raw)
        doc = interpolate_doc(raw, placeholder_env(uses))
    except InterpolationError as exc:
        return [f"interpolation: {exc}"]
    documented = set(re.findall(_NAME, docs_text))
    for name in sorted({u.name for u in uses if not u.has_default}):
        if name not in documented:
            where = next(u.where for u in uses if u.name == name)
            r.add(
                f"variables: ${{{name}}} (used without a default at {where}) is not documented in "
                "docs/production.md"
            )

    if schema is not None:
        for msg in schema_errors(doc, schema):
            r.add(msg)

    services: dict[str, dict] = {k: (v or {}) for k, v in doc["services"].items()}

    # depends_on
    for name, svc in services.items():
        for target, spec in _depends_on(svc).items():
            if target not in services:
                r.add(f"{name}: depends_on unknown service {target!r}")
                continue
            cond = (spec or {}).get("condition", "service_started")
            if cond == "service_healthy" and not _has_healthcheck(services[target], base_dir):
                r.add(f"{name}: waits for {target} to be healthy but {target} has no healthcheck")
            restart = str(services[target].get("restart", "no"))
            if cond == "service_completed_successfully" and restart != "no":
                r.add(
                    f"{name}: waits for {target} to complete but {target} restarts "
                    f"(restart: {services[target].get('restart')})"
                )

    # one image for api / worker / migrate
    present = [s for s in APP_SERVICES if s in services]
    for s in ("api", "worker"):
        if s not in services:
            r.add(f"{s}: service missing")
    if present:
        ref = present[0]
        for s in present[1:]:
            for key in ("image", "build"):
                if services[s].get(key) != services[ref].get(key):
                    r.add(
                        f"{s}: {key} differs from {ref}'s ({services[s].get(key)!r} != "
                        f"{services[ref].get(key)!r}): the API, worker and migrations must run one image"
                    )
        if not services[ref].get("build") and not services[ref].get("image"):
            r.add(f"{ref}: neither image nor build")

    # ports
    for name, svc in services.items():
        if svc.get("network_mode") == "host":
            r.add(f"{name}: network_mode host exposes every port on the host")
        published = _published(svc)
        if published and name not in PUBLISHERS:
            r.add(
                f"{name}: publishes {', '.join(p for p, _ in published)}; only "
                f"{', '.join(sorted(PUBLISHERS))} may publish ports"
            )
        for port_spec, container_port in published:
            if container_port is not None and container_port in FORBIDDEN_PORTS:
                what = FORBIDDEN_PORTS[container_port]
                r.add(f"{name}: publishes {what} port {container_port} to the host ({port_spec})")

    # scalable worker
    if "worker" in services:
        w = services["worker"]
        if w.get("container_name"):
            r.add("worker: container_name prevents `docker compose up --scale worker=N`")
        if w.get("ports"):
            r.add("worker: published ports prevent `docker compose up --scale worker=N`")

    # ORCH_* names are settings
    fields = _settings_fields()
    for name, svc in services.items():
        for key in _env(svc):
            if key.startswith("ORCH_") and key not in fields:
                r.add(f"{name}: environment {key} is not a field of core.settings.Settings")
    for u in uses:
        if u.name.startswith("ORCH_") and u.name not in fields:
            r.add(f"variables: ${{{u.name}}} at {u.where} is not a field of core.settings.Settings")

    # the app environment makes a valid production Settings that uses AWS S3
    for s in present:
        env = _env(services[s])
        try:
            st = _build_settings(env)
        except Exception as exc:  # noqa: BLE001 - reported as a problem
            errs = getattr(exc, "errors", None)
            detail = "; ".join(e["msg"] for e in errs()) if callable(errs) else str(exc).splitlines()[0]
            r.add(f"{s}: environment does not make a valid Settings: {detail}")
            continue
        if st.env != "prod":
            r.add(f"{s}: ORCH_ENV is {st.env!r}, expected 'prod'")
        if st.s3_endpoint_url is not None:
            r.add(f"{s}: ORCH_S3_ENDPOINT_URL defaults to {st.s3_endpoint_url!r}; empty (AWS S3) expected")
        if (st.s3_access_key_id is None) != (st.s3_secret_access_key is None):
            r.add(
                f"{s}: ORCH_S3_ACCESS_KEY_ID and ORCH_S3_SECRET_ACCESS_KEY must both be set or both empty "
                "(unset ones fall back to the dev defaults)"
            )

    # pinned images
    for name, svc in services.items():
        image = svc.get("image")
        if not image or svc.get("build") is not None:
            continue
        if "@sha256:" in image:
            continue
        last = image.rsplit("/", 1)[-1]
        tag = last.split(":", 1)[1] if ":" in last else ""
        if not tag or tag == "latest":
            r.add(f"{name}: image {image!r} is not pinned to a version tag")

    # files
    for name, svc in services.items():
        if svc.get("build") is not None:
            ctx, dockerfile = _build_paths(svc["build"], base_dir)
            if not ctx.is_dir():
                r.add(f"{name}: build context {ctx} does not exist")
            elif not dockerfile.is_file():
                r.add(f"{name}: Dockerfile {dockerfile} does not exist")
        for v in svc.get("volumes") or []:
            src = v.get("source") if isinstance(v, dict) else str(v).split(":", 1)[0]
            if src and (src.startswith(".") or src.startswith("/")) and not (base_dir / src).exists():
                r.add(f"{name}: bind mount source {src} does not exist")
    named = set((doc.get("volumes") or {}).keys())
    for name, svc in services.items():
        for v in svc.get("volumes") or []:
            src = v.get("source") if isinstance(v, dict) else str(v).split(":", 1)[0]
            is_path = src and src.startswith((".", "/", "~"))
            if src and ":" in str(v) and not is_path and src not in named:
                r.add(f"{name}: named volume {src!r} is not declared under top-level volumes")
    return r.problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("compose_file", nargs="?", default=str(ROOT / "docker-compose.yml"))
    ap.add_argument("--schema", default=str(DEFAULT_SCHEMA), help="Compose Specification JSON schema")
    ap.add_argument("--docs", default=str(DEFAULT_DOCS), help="where every required variable is documented")
    args = ap.parse_args(argv)
    path = Path(args.compose_file)
    if not path.is_file():
        print(f"compose-check: {path} not found", file=sys.stderr)
        return 2
    docs = Path(args.docs)
    schema = json.loads(Path(args.schema).read_text())
    problems = check(
        path.read_text(),
        base_dir=path.resolve().parent,
        docs_text=docs.read_text() if docs.is_file() else "",
        schema=schema,
    )
    if problems:
        for p in problems:
            print(f"{path}: {p}")
        print(f"compose-check: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    n = len(load_yaml(path.read_text())["services"])
    print(f"compose-check: {path} OK ({n} services; Compose schema and project rules)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
