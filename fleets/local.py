"""The ``local`` fleet driver: runs the app on this host as a detached process group.

Layout of one attempt, ``<data_dir>/runs/<run_id>/<attempt>/``:

``app/``            the extracted artifact (the app's working directory)
``launched``        the atomic claim (O_EXCL): JSON of the supervisor that starts the app, or
                    ``{"failed": reason}`` when the artifact was refused, or ``{"terminated": ...}`` when
                    a terminate came first. Whoever creates it decides the attempt's fate: nobody starts
                    it twice.
``pid``             JSON ``{pid, pgid, ticks}`` of the app's process group leader (``ticks`` = start time
                    from ``/proc/<pid>/stat``, to tell our process from a later one with a reused pid)
``exit_code``       JSON ``{exit_code, signal}``, written atomically (tmp + rename) when the app's leader
                    exits
``log``             the app's combined stdout/stderr
``terminate_requested``  present once :meth:`LocalFleetDriver.terminate` has begun

The app runs under a tiny Python supervisor that double-forks away from the worker (so it outlives it and is
never a zombie of it), claims ``launched``, starts the app in a new process group, records its pid and
finally its exit code. After the app's leader exits, anything it left in its group gets SIGTERM and, after
the grace period, SIGKILL: a job ends when its main process ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from core.s3 import s3_client
from fleets.archive import ZipRejected, extract_zip
from fleets.base import FleetHandle, FleetState, FleetStatus, LaunchSpec
from fleets.contract import app_argv, app_env, safe_path_part

log = logging.getLogger(__name__)

FINAL_STATES = (FleetState.SUCCEEDED, FleetState.FAILED, FleetState.TERMINATED)

# Environment passed through from the worker to the app; everything else (DB URLs, keys, AWS credentials)
# stays out of the client's process.
ENV_PASSTHROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME")

# Run as ``python -I -c SUPERVISOR <attempt_dir> <grace_sec> <cmd...>`` in a new session.
SUPERVISOR = r"""
import json, os, signal, subprocess, sys, time
d, grace, cmd = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
if os.fork():  # the launcher reaps this parent at once; the supervisor below is adopted by init
    os._exit(0)

def ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        return s[s.rindex(")") + 2:].split()[19]
    except (OSError, ValueError, IndexError):
        return None

def write_json(name, obj):
    tmp = os.path.join(d, f".{name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(d, name))

try:
    fd = os.open(os.path.join(d, "launched"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
except FileExistsError:
    sys.exit(0)  # another launch (or a terminate) claimed this attempt first
me = os.getpid()
os.write(fd, json.dumps({"supervisor_pid": me, "supervisor_ticks": ticks(me), "at": time.time()}).encode())
os.fsync(fd)
os.close(fd)
for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
    signal.signal(s, lambda *_: None)  # a handler, not SIG_IGN: exec() resets it, so the app gets defaults
logf = open(os.path.join(d, "log"), "ab", buffering=0)
try:
    p = subprocess.Popen(cmd, cwd=os.path.join(d, "app"), stdin=subprocess.DEVNULL, stdout=logf,
                         stderr=subprocess.STDOUT, process_group=0, close_fds=True)
except OSError as e:
    logf.write(f"orchestrator: cannot start the app: {e}\n".encode())
    write_json("exit_code", {"exit_code": 127, "signal": None, "error": str(e)})
    sys.exit(0)
write_json("pid", {"pid": p.pid, "pgid": p.pid, "ticks": ticks(p.pid)})
rc = p.wait()
sig = -rc if rc < 0 else None

def group_alive():
    # zombies do not count: an init that never reaps orphans would keep the group "alive" forever
    if os.path.isdir("/proc/self"):
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open(f"/proc/{name}/stat") as f:
                        s = f.read()
                    fields = s[s.rindex(")") + 2:].split()
                except (OSError, ValueError):
                    continue
                if fields[2] == str(p.pid) and fields[0] not in ("Z", "X"):
                    return True
        return False
    try:
        os.killpg(p.pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True

for s, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
    if not group_alive():
        break
    try:
        os.killpg(p.pid, s)
    except ProcessLookupError:
        break
    end = time.monotonic() + wait
    while group_alive() and time.monotonic() < end:
        time.sleep(0.05)
write_json("exit_code", {"exit_code": 128 + sig if sig else rc, "signal": sig})
"""


def _proc_ticks(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (Linux ``/proc``), None if no such live process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        fields = s[s.rindex(")") + 2:].split()
        if fields[0] in ("Z", "X"):  # zombie/dead: finished, just not reaped yet
            return None
        return fields[19]
    except (OSError, ValueError, IndexError):
        return None


def _have_proc() -> bool:
    return os.path.isdir("/proc/self")


def _process_alive(pid: int | None, ticks: str | None) -> bool:
    """Is this very process (pid and start ticks) still alive?"""
    if not pid:
        return False
    if _have_proc():
        t = _proc_ticks(pid)
        return t is not None and (ticks is None or t == ticks)
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid`` (Linux ``/proc`` scan)."""
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                s = f.read()
            fields = s[s.rindex(")") + 2:].split()
        except (OSError, ValueError):
            continue
        if fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            members.append(int(name))
    return members


def _group_alive(pgid: int, ticks: str | None) -> bool:
    """Does our process group still have live (non-zombie) members? Guards against a reused pid: Linux
    never hands out a pid that is still some group's id, so a live process with that pid but another
    start time means our group emptied and the id moved on."""
    if _have_proc():
        t = _proc_ticks(pgid)
        if t is not None and ticks is not None and t != ticks:
            return False
        return bool(_group_members(pgid))
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        # ``launched`` is written right after its O_EXCL create: it may be empty for a moment
        return {}


def _poll_until(cond: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while True:
        if cond():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(interval)


class LocalFleetDriver:
    """Runs each attempt as a detached process group under ``<settings.data_dir>/runs``."""

    name = "local"

    def __init__(self, settings: Any, s3_client_factory: Callable[[Any], Any] = s3_client) -> None:
        self.settings = settings
        self.s3_client_factory = s3_client_factory
        self.runs_dir = (Path(settings.data_dir) / "runs").resolve()
        self.grace_sec = float(getattr(settings, "cancel_grace_sec", 10.0))
        self.start_timeout_sec = float(getattr(settings, "local_start_timeout_sec", 30.0))

    # --- paths ----------------------------------------------------------------------------------------
    def attempt_dir(self, run_id: str, attempt: int) -> Path:
        safe_path_part(run_id, "run_id")
        if not isinstance(attempt, int) or attempt < 0:
            raise ValueError(f"attempt must be a non-negative int, got {attempt!r}")
        return self.runs_dir / run_id / str(attempt)

    def _dir(self, handle: FleetHandle) -> Path:
        ref_dir = handle.ref.get("dir") if handle.ref else None
        if not ref_dir:
            return self.attempt_dir(handle.run_id, handle.attempt)
        # relative to runs_dir (what launch stores, so history and DB name no host path); absolute accepted
        return Path(ref_dir) if Path(ref_dir).is_absolute() else self.runs_dir / ref_dir

    # --- FleetDriver ----------------------------------------------------------------------------------
    def launch(self, spec: LaunchSpec) -> FleetHandle:
        """Start the attempt, or re-attach to it if it was already launched (never starts it twice).

        Transient S3 errors raise (the activity retries); a checksum mismatch, a missing artifact or a
        refused zip are recorded as this attempt's FAILED outcome instead.
        """
        d = self.attempt_dir(spec.run_id, spec.attempt)
        handle = FleetHandle(driver=self.name, run_id=spec.run_id, attempt=spec.attempt,
                             ref={"dir": str(d.relative_to(self.runs_dir))})
        d.mkdir(parents=True, exist_ok=True)
        if (d / "launched").exists():
            self._wait_started(d)
            return handle
        cmd = self._prepare(spec, d)
        if cmd is None:  # refused artifact, already recorded
            return handle
        env = {k: os.environ[k] for k in ENV_PASSTHROUGH if k in os.environ}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env["PYTHONUNBUFFERED"] = "1"
        env.update(app_env(spec.run_id, spec.data_uri, spec.args))
        with open(d / "supervisor.log", "ab") as slog:
            starter = subprocess.Popen(
                [sys.executable, "-I", "-c", SUPERVISOR, str(d), str(self.grace_sec), *cmd],
                stdin=subprocess.DEVNULL, stdout=slog, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, env=env, cwd=str(d),
            )
            starter.wait(timeout=30)  # the first fork's parent exits at once
        self._wait_started(d)
        log.info("local fleet: launched run %s attempt %s in %s", spec.run_id, spec.attempt, d)
        return handle

    def poll(self, handle: FleetHandle) -> FleetStatus:
        """State of the attempt from its run directory (no side effects)."""
        d = self._dir(handle)
        launched = _read_json(d / "launched")
        terminating = (d / "terminate_requested").exists()
        if launched is None:
            return FleetStatus(FleetState.PENDING, reason="launch in progress")
        if launched.get("failed"):
            return FleetStatus(FleetState.FAILED, reason=launched["failed"])
        if launched.get("terminated"):
            return FleetStatus(FleetState.TERMINATED, reason="terminated before the app started")
        done = self._final_from_exit(d, terminating)
        if done:
            return done
        pid = _read_json(d / "pid")
        sup_alive = _process_alive(launched.get("supervisor_pid"), launched.get("supervisor_ticks"))
        if not pid:
            if sup_alive or not launched:
                return FleetStatus(FleetState.PENDING, reason="starting the app")
        elif _group_alive(pid["pgid"], pid.get("ticks")) or sup_alive:
            return FleetStatus(FleetState.RUNNING)
        done = self._final_from_exit(d, terminating)  # it may have been written since we looked
        if done:
            return done
        if terminating:
            return FleetStatus(FleetState.TERMINATED, reason="terminated by request")
        return FleetStatus(FleetState.FAILED, reason="the app's supervisor vanished without an exit code "
                                                     "(host restart or kill -9)")

    def terminate(self, handle: FleetHandle) -> FleetStatus:
        """Stop the attempt: SIGTERM to its process group, SIGKILL after ``settings.cancel_grace_sec``
        seconds, then wait (bounded) until the group is gone. A no-op that returns the final status when
        the attempt already finished. Raises RuntimeError if the group survives SIGKILL."""
        d = self._dir(handle)
        status = self.poll(handle)
        if status.state in FINAL_STATES:
            return status
        d.mkdir(parents=True, exist_ok=True)
        if self._claim(d, {"terminated": True, "at": time.time()}):
            return self.poll(handle)  # nothing had started; now nothing ever will
        (d / "terminate_requested").touch()
        launched = _read_json(d / "launched") or {}

        def sup_alive() -> bool:
            return _process_alive(launched.get("supervisor_pid"), launched.get("supervisor_ticks"))

        _poll_until(lambda: bool(_read_json(d / "pid")) or (d / "exit_code").exists() or not sup_alive(),
                    self.start_timeout_sec)
        pid = _read_json(d / "pid")
        if pid:
            pgid, ticks = int(pid["pgid"]), pid.get("ticks")
            for sig, wait in ((signal.SIGTERM, self.grace_sec), (signal.SIGKILL, 10.0)):
                if not _group_alive(pgid, ticks):
                    break
                log.info("local fleet: %s to process group %s (run %s attempt %s)",
                         sig.name, pgid, handle.run_id, handle.attempt)
                try:
                    os.killpg(pgid, sig)
                except ProcessLookupError:
                    break
                _poll_until(lambda: not _group_alive(pgid, ticks), wait)
            if _group_alive(pgid, ticks):
                raise RuntimeError(f"process group {pgid} of run {handle.run_id} survived SIGKILL")
        _poll_until(lambda: (d / "exit_code").exists() or not sup_alive(), 10.0)
        return self.poll(handle)

    def logs(self, handle: FleetHandle, tail_bytes: int = 65536) -> str:
        """The last ``tail_bytes`` bytes of the app's combined stdout/stderr, decoded as UTF-8."""
        path = self._dir(handle) / "log"
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - max(0, tail_bytes)))
                return f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    # --- internals ------------------------------------------------------------------------------------
    def _final_from_exit(self, d: Path, terminating: bool) -> FleetStatus | None:
        ex = _read_json(d / "exit_code")
        if not ex or "exit_code" not in ex:
            return None
        code, sig = int(ex["exit_code"]), ex.get("signal")
        if terminating:
            return FleetStatus(FleetState.TERMINATED, exit_code=code, reason="terminated by request")
        if code == 0:
            return FleetStatus(FleetState.SUCCEEDED, exit_code=0)
        why = f"app killed by signal {sig}" if sig else f"app exited with code {code}"
        return FleetStatus(FleetState.FAILED, exit_code=code, reason=ex.get("error") or why)

    def _claim(self, d: Path, content: dict[str, Any]) -> bool:
        """Create ``launched`` atomically with ``content``; False if someone else already did."""
        try:
            fd = os.open(d / "launched", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(content, f)
            f.flush()
            os.fsync(f.fileno())
        return True

    def _fail(self, d: Path, reason: str) -> None:
        if self._claim(d, {"failed": reason, "at": time.time()}):
            with open(d / "log", "ab") as f:
                f.write(f"orchestrator: {reason}\n".encode())
            log.warning("local fleet: %s (%s)", reason, d)

    def _prepare(self, spec: LaunchSpec, d: Path) -> list[str] | None:
        """Download, verify and extract the artifact into ``d/app`` (once); return the app command."""
        argv = app_argv(spec.args)
        app = d / "app"
        if not app.is_dir():
            stage = Path(tempfile.mkdtemp(prefix=".stage-", dir=d))
            try:
                zip_path = stage / "artifact.zip"
                uri = f"s3://{spec.artifact_bucket}/{spec.artifact_key}"
                try:
                    digest = self._download(spec, zip_path)
                except ClientError as exc:
                    code = exc.response.get("Error", {}).get("Code", "")
                    if code in ("NoSuchKey", "404", "NoSuchBucket", "NotFound"):
                        self._fail(d, f"artifact not found: {uri}")
                        return None
                    raise
                if digest != spec.artifact_sha256.strip().lower():
                    self._fail(d, "artifact checksum mismatch")
                    return None
                try:
                    extract_zip(zip_path, stage / "app", self.settings)
                except ZipRejected as exc:
                    self._fail(d, f"artifact rejected: {exc}")
                    return None
                try:
                    os.rename(stage / "app", app)
                except OSError:
                    if not app.is_dir():  # else a concurrent launch put the same bytes there first
                        raise
            finally:
                shutil.rmtree(stage, ignore_errors=True)
        if (app / "run.sh").is_file():
            return ["sh", "run.sh", *argv]
        return [sys.executable, "main.py", *argv]

    def _download(self, spec: LaunchSpec, dest: Path) -> str:
        """Stream the artifact to ``dest``; return its sha256 (hex)."""
        client = self.s3_client_factory(self.settings)
        body = client.get_object(Bucket=spec.artifact_bucket, Key=spec.artifact_key)["Body"]
        h = hashlib.sha256()
        with open(dest, "wb") as f:
            for chunk in body.iter_chunks(1024 * 1024):
                h.update(chunk)
                f.write(chunk)
        return h.hexdigest()

    def _wait_started(self, d: Path) -> None:
        """Wait (bounded by ``local_start_timeout_sec``) until the attempt has a pid, an exit code or a
        recorded failure; raise RuntimeError if no supervisor ever claimed it."""
        def started() -> bool:
            launched = _read_json(d / "launched")
            if launched is None or launched == {}:
                return False
            if launched.get("failed") or launched.get("terminated"):
                return True
            if (d / "pid").exists() or (d / "exit_code").exists():
                return True
            return not _process_alive(launched.get("supervisor_pid"), launched.get("supervisor_ticks"))

        if not _poll_until(started, self.start_timeout_sec):
            tail = ""
            with contextlib.suppress(OSError):
                tail = (d / "supervisor.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the app of {d} did not start within {self.start_timeout_sec:.0f}s: {tail}")
