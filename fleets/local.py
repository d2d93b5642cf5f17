"""The ``local`` fleet driver: runs the app on this host as a detached process group.

Layout of one attempt, ``<data_dir>/runs/<run_id>/<attempt>/`` (the worker's, 0711: the app may only pass
through it to its own directories):

``app/``            the extracted artifact, the app's working directory (run uid, 0700, when root)
``home/``, ``tmp/``  the app's ``$HOME`` and ``$TMPDIR`` (run uid, 0700, when root)
``log``             the app's combined stdout/stderr (it writes through the descriptor it was given); copied
                    to the artifact store while it runs and when it ends (:meth:`LocalFleetDriver.upload_log`)
``run_uid``         JSON ``{uid, gid}`` the attempt runs as (only when the worker is root)
``launched``        the atomic claim (O_EXCL): JSON of the supervisor that starts the app, or
                    ``{"failed": reason}`` when the artifact was refused, or ``{"terminated": ...}`` when
                    a terminate came first. Whoever creates it decides the attempt's fate: nobody starts
                    it twice.
``pid``             JSON ``{pid, pgid, create_time}`` of the app's process group leader (``create_time``
                    from psutil tells our process from a later one with a reused pid)
``exit_code``       JSON ``{exit_code, signal}``, written atomically (tmp + rename) when the app's leader
                    exits
``terminate_requested``  present once :meth:`LocalFleetDriver.terminate` has begun
``supervisor.log``  the supervisor's own output (for operators; never shown to the tenant)

The app runs under :mod:`fleets.supervisor`, which double-forks away from the worker (so it outlives it and
is never a zombie of it), claims ``launched``, starts the app in a new process group (as the attempt's own
uid/gid when the worker is root), records its pid and finally its exit code. After the app's leader exits,
anything it left in its group (and, with a run uid, anything else running as that uid) gets SIGTERM and,
after the grace period, SIGKILL: a job ends when its main process ends. The app's environment is scrubbed
to the app contract's variables. README "What `local` isolates and what it does not" says what this does
and does not protect; :func:`clean_run_dirs` deletes finished attempts after the retention period.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from core.s3 import s3_client
from core.settings import Settings
from fleets.archive import ZipRejected, extract_zip
from fleets.base import FleetHandle, FleetState, FleetStatus, LaunchSpec
from fleets.contract import app_argv, app_env, args_problem, safe_path_part
from fleets.logstore import log_key, upload_file
from fleets.supervisor import create_time as _create_time
from fleets.supervisor import group_members, remove_files_of, stop_all, uid_members

log = logging.getLogger(__name__)

FINAL_STATES = (FleetState.SUCCEEDED, FleetState.FAILED, FleetState.TERMINATED)

LOG_UPLOAD_MIN_INTERVAL_SEC = 10.0  # while the app runs; the final copy is made as soon as it ended
APP_DIRS = ("app", "home", "tmp")  # the only parts of an attempt the app may write (as the run uid)


def _proc_ticks(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (Linux ``/proc``), None if no such live process.
    Only for attempts launched before the supervisor recorded psutil's ``create_time``."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        fields = s[s.rindex(")") + 2 :].split()
        if fields[0] in ("Z", "X"):  # zombie/dead: finished, just not reaped yet
            return None
        return fields[19]
    except (OSError, ValueError, IndexError):
        return None


def _same_process(pid: int, rec: dict[str, Any], prefix: str = "") -> bool:
    """Is ``pid`` alive and the very process ``rec`` describes (same start time: no reused pid)?"""
    ct = rec.get(f"{prefix}create_time")
    if ct is not None:
        now = _create_time(pid)
        return now is not None and abs(now - float(ct)) < 0.01
    ticks = rec.get(f"{prefix}ticks")
    t = _proc_ticks(pid)
    return t is not None and (ticks is None or t == ticks)


def _process_alive(launched: dict[str, Any]) -> bool:
    """Is the supervisor recorded in ``launched`` still alive?"""
    pid = launched.get("supervisor_pid")
    return pid is not None and _same_process(int(pid), launched, "supervisor_")


def _group_alive(pid_rec: dict[str, Any]) -> bool:
    """Does the app's process group still have live (non-zombie) members? Guards against a reused pid:
    Linux never hands out a pid that is still some group's id, so a live process with that pid but another
    start time means our group emptied and the id moved on."""
    pgid = int(pid_rec["pgid"])
    if _create_time(pgid) is not None and not _same_process(pgid, pid_rec):
        return False
    return bool(group_members(pgid))


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


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _chmod(path: Path, mode: int) -> None:
    """Best effort (a file of another user in a non-root worker's data dir is left as it is)."""
    with contextlib.suppress(FileNotFoundError, PermissionError):
        if stat.S_IMODE(path.lstat().st_mode) != mode and not path.is_symlink():
            os.chmod(path, mode)


def harden_data_dir(data_dir: Path) -> None:
    """Owner-only modes on the data dir's contents so an app under its own uid reads none of it: files 0600
    (the SQLite DB and its -wal/-shm, the admin key, temporal.db), directories 0700 (``logs/``, ``s3/`` with
    the S3 identities file), the data dir itself and ``runs/`` 0711 (traverse only, to reach the app's own
    directories)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    _chmod(data_dir, 0o711)
    for entry in data_dir.iterdir():
        if entry.name == "runs":
            _chmod(entry, 0o711)
        elif entry.is_symlink():
            continue
        elif entry.is_dir():
            _chmod(entry, stat.S_IMODE(entry.stat().st_mode) & 0o700)
        else:
            _chmod(entry, stat.S_IMODE(entry.stat().st_mode) & 0o600)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    """Give ``root`` and everything in it (no symlink is followed) to uid:gid; the top directory 0700."""
    os.lchown(root, uid, gid)
    os.chmod(root, 0o700)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.lchown(os.path.join(dirpath, name), uid, gid)


def _mkdir_mode(path: Path, mode: int) -> None:
    path.mkdir(exist_ok=True)
    _chmod(path, mode)


def _tenant_text(text: str, d: Path, *roots: Path) -> str:
    """``text`` with every host path made relative: under ``d`` (the attempt dir, or the staged app) to
    ``d``; under one of ``roots`` (runs dir, data dir) to that root's name. What a tenant may read."""
    for base, label in sorted(
        ((d, "."), *((r, r.name) for r in roots)), key=lambda x: len(str(x[0])), reverse=True
    ):
        b = str(base)
        text = text.replace(b + os.sep, "" if label == "." else label + os.sep).replace(b, label)
    return text


class LocalFleetDriver:
    """Runs each attempt as a detached process group under ``<settings.data_dir>/runs``; when the worker is
    root, as the attempt's own unprivileged uid/gid (README: "What `local` isolates and what it does not")."""

    name = "local"

    def __init__(self, settings: Settings, s3_client_factory: Callable[[Any], Any] = s3_client) -> None:
        self.settings = settings
        self.s3_client_factory = s3_client_factory
        self._s3: Any = None  # built on first use (boto3 clients are thread-safe)
        self._uploaded: dict[str, tuple[tuple[int, int], float]] = {}  # log key -> ((size, mtime), when)
        self.data_dir = Path(settings.data_dir).resolve()
        self.runs_dir = self._choose_runs_dir(settings)
        self.grace_sec = settings.cancel_grace_sec
        self.start_timeout_sec = float(settings.local_start_timeout_sec)
        self.app_path = settings.local_app_path
        self.uid_count = settings.local_run_uid_count
        self.uid_base = settings.local_run_uid_base or default_uid_base(self.data_dir, self.uid_count)
        self.drop_privileges = is_root() and settings.local_run_as_run_uid
        # a namespace only isolates an app that cannot leave it again, i.e. one under its own uid
        self.isolate_network = self.drop_privileges and settings.local_app_network == "none"
        if not _ANNOUNCED:
            _ANNOUNCED.add(True)
            log.log(*isolation_summary(self.drop_privileges, self.isolate_network))
            if self.isolate_network and not network_namespaces_available():
                log.error(
                    "local fleet: this host cannot create network namespaces (a container without "
                    'CAP_SYS_ADMIN?): every app will fail with "cannot isolate the app\'s network"; set '
                    "ORCH_LOCAL_APP_NETWORK=host to run apps on the host's network instead"
                )
        if self.drop_privileges and settings.local_runs_dir is None and self._closed_parents():
            # e.g. a checkout under /root: apps under their own uid could not reach data_dir/runs, so the
            # runs live in a directory of the system temp dir named after the data dir (stable across
            # restarts, so re-attach still finds them)
            tag = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
            self.runs_dir = Path(tempfile.gettempdir()) / f"orch-runs-{tag}"
            if self.runs_dir not in _MOVED_RUNS_DIRS:
                _MOVED_RUNS_DIRS.add(self.runs_dir)
                log.warning(
                    "local fleet: the data dir's parents are closed to other users; runs in %s", self.runs_dir
                )

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
        handle = FleetHandle(
            driver=self.name,
            run_id=spec.run_id,
            attempt=spec.attempt,
            ref={
                "dir": str(d.relative_to(self.runs_dir)),
                # where upload_log copies the app's log (the API reads it there, as for ec2)
                "result_bucket": self.settings.s3_bucket,
                "log_key": log_key(spec.client_id, spec.run_id, spec.attempt),
            },
        )
        if (d / "launched").exists():
            self._wait_started(d)
            return handle
        try:
            self._launch(spec, d)
        except OSError as exc:  # the activity retries; its error may reach the run's status_reason
            log.warning("local fleet: launching run %s attempt %s failed: %s", spec.run_id, spec.attempt, exc)
            raise RuntimeError(f"local fleet: cannot launch the app: {self._os_error_text(exc, d)}") from None
        return handle

    def _launch(self, spec: LaunchSpec, d: Path) -> None:
        harden_data_dir(self.data_dir)
        _mkdir_mode(self.runs_dir, 0o711)
        _mkdir_mode(d.parent, 0o711)
        _mkdir_mode(d, 0o711)  # the worker's: the supervisor's state; the app only traverses it
        owner = self._run_owner(spec.run_id, spec.attempt, d)
        closed = self._closed_parents() if owner else []
        if closed:
            log.error(
                "local fleet: %s not traversable by other users, so apps cannot run under their own "
                "uid: set ORCH_LOCAL_RUNS_DIR (e.g. /var/lib/orch-runs), or chmod o+x those directories, or "
                "set ORCH_LOCAL_RUN_AS_RUN_UID=false (no uid isolation)",
                ", ".join(closed),
            )
            self._fail(
                d,
                "the local fleet cannot run apps under their own uid on this host: a parent "
                "directory of its data dir is closed to other users (the worker's log names it)",
            )
            return
        if problem := args_problem(spec.args):  # a row stored before the API refused such args
            self._fail(d, f"the args cannot be given to the app: {problem}")
            return
        cmd = self._prepare(spec, d)
        if cmd is None:  # refused artifact, already recorded
            return
        for name in ("home", "tmp"):
            (d / name).mkdir(exist_ok=True)
        for name in APP_DIRS:
            if owner:
                _chown_tree(d / name, *owner)
            else:
                _chmod(d / name, 0o700)
        env = {
            "PATH": self.app_path,
            "HOME": str(d / "home"),
            "TMPDIR": str(d / "tmp"),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            **app_env(spec.run_id, spec.data_uri, spec.args),
        }
        ids = ["--uid", str(owner[0]), "--gid", str(owner[1])] if owner else []
        if owner and self.isolate_network:
            ids.append("--isolate-net")
        slog_fd = os.open(d / "supervisor.log", os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
        with os.fdopen(slog_fd, "ab") as slog:
            starter = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-m",
                    "fleets.supervisor",
                    str(d),
                    str(self.grace_sec),
                    *ids,
                    "--",
                    *cmd,
                ],
                stdin=subprocess.DEVNULL,
                stdout=slog,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env=env,
                cwd=str(d),
            )
            starter.wait(timeout=30)  # the first fork's parent exits at once
        self._wait_started(d)
        log.info(
            "local fleet: launched run %s attempt %s in %s%s",
            spec.run_id,
            spec.attempt,
            d,
            f" as uid {owner[0]}" if owner else "",
        )

    def poll(self, handle: FleetHandle) -> FleetStatus:
        """State of the attempt from its run directory; also copies the app's log to the artifact store
        (:meth:`upload_log`), so every poll of the monitor and the final one of terminate keep it current."""
        status = self._poll(handle)
        self.upload_log(handle, final=status.state in FINAL_STATES)
        return status

    def upload_log(self, handle: FleetHandle, final: bool = False) -> bool:
        """Copy the attempt's log to ``ref["log_key"]`` in the artifact store (``fleets.logstore``) if it
        changed since the last copy, at most every ``LOG_UPLOAD_MIN_INTERVAL_SEC`` while the app runs and
        always once it ended (``final``). Never raises: a failed copy is logged and retried at the next
        poll. True if it uploaded."""
        key = (handle.ref or {}).get("log_key")
        if not key:
            return False  # a handle rebuilt without the launch's ref: the log stays on this host only
        path = self._dir(handle) / "log"
        try:
            st = path.stat()
        except OSError:
            return False
        seen = (st.st_size, st.st_mtime_ns)
        last = self._uploaded.get(key)
        now = time.monotonic()
        if last is not None and (
            last[0] == seen or (not final and now - last[1] < LOG_UPLOAD_MIN_INTERVAL_SEC)
        ):
            return False
        try:
            if self._s3 is None:
                self._s3 = self.s3_client_factory(self.settings)
            upload_file(self._s3, path, handle.ref.get("result_bucket") or self.settings.s3_bucket, key)
        except Exception as exc:  # noqa: BLE001 - the log copy must never fail the run
            log.warning("local fleet: copying the log of run %s to S3 failed: %s", handle.run_id, exc)
            self._uploaded[key] = ((-1, -1), now)  # retried after the interval (or by the final poll)
            return False
        self._uploaded[key] = (seen, now)
        return True

    def _poll(self, handle: FleetHandle) -> FleetStatus:
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
        sup_alive = _process_alive(launched)
        if not pid:
            if sup_alive or not launched:
                return FleetStatus(FleetState.PENDING, reason="starting the app")
        elif _group_alive(pid) or sup_alive:
            return FleetStatus(FleetState.RUNNING)
        done = self._final_from_exit(d, terminating)  # it may have been written since we looked
        if done:
            return done
        if terminating:
            return FleetStatus(FleetState.TERMINATED, reason="terminated by request")
        return FleetStatus(
            FleetState.FAILED,
            reason="the app's supervisor vanished without an exit code (host restart or kill -9)",
        )

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
        (d / "terminate_requested").touch(mode=0o600)
        launched = _read_json(d / "launched") or {}

        def sup_alive() -> bool:
            return _process_alive(launched)

        _poll_until(
            lambda: bool(_read_json(d / "pid")) or (d / "exit_code").exists() or not sup_alive(),
            self.start_timeout_sec,
        )
        pid = _read_json(d / "pid")
        if pid:
            pgid = int(pid["pgid"])
            for sig, wait in ((signal.SIGTERM, self.grace_sec), (signal.SIGKILL, 10.0)):
                if not _group_alive(pid):
                    break
                log.info(
                    "local fleet: %s to process group %s (run %s attempt %s)",
                    sig.name,
                    pgid,
                    handle.run_id,
                    handle.attempt,
                )
                try:
                    os.killpg(pgid, sig)
                except ProcessLookupError:
                    break
                _poll_until(lambda: not _group_alive(pid), wait)
            if _group_alive(pid):
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
    @staticmethod
    def _choose_runs_dir(settings: Settings) -> Path:
        configured = settings.local_runs_dir
        return Path(configured).resolve() if configured else Path(settings.data_dir).resolve() / "runs"

    def _os_error_text(self, exc: OSError, d: Path) -> str:
        """What a tenant may read of an OSError: its text, and the file it names only relative to the attempt,
        runs or data dir (never the worker's interpreter or any other host path)."""
        text = exc.strerror or type(exc).__name__
        for name in (exc.filename, exc.filename2):
            if name is None:
                continue
            shown = _tenant_text(os.fsdecode(name), d, self.runs_dir, self.data_dir)
            if not os.path.isabs(shown):
                text += f": {shown}"
        return text

    def _closed_parents(self) -> list[str]:
        """Parents of the runs dir that a run uid cannot traverse (no o+x). Python opens ``main.py`` and
        imports by absolute path, and ``$HOME``/``$TMPDIR`` are absolute: an app under its own uid needs
        them all."""
        # the data dir itself is made traversable (0711) by harden_data_dir at launch: only its parents count,
        # so every process (worker, API) decides the same way before and after the first launch
        parents = self.data_dir.parents if self.runs_dir == self.data_dir / "runs" else self.runs_dir.parents
        return [str(p) for p in parents if p.exists() and not p.stat().st_mode & stat.S_IXOTH]

    def _run_owner(self, run_id: str, attempt: int, d: Path) -> tuple[int, int] | None:
        """The attempt's own uid (= gid) when the worker is root, else None. Idempotent: the same attempt
        always gets the same id, recorded in ``run_uid``; two live attempts never share one (a lock file
        per id under ``runs/.uids``, released by :func:`clean_run_dirs`)."""
        if not self.drop_privileges:
            return None
        rec = _read_json(d / "run_uid")
        if rec and "uid" in rec:
            return int(rec["uid"]), int(rec["gid"])
        uid = allocate_uid(self.runs_dir, f"{run_id}/{attempt}", self.uid_base, self.uid_count)
        _write_json_atomic(d / "run_uid", {"uid": uid, "gid": uid})
        return uid, uid

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
            fd = os.open(d / "launched", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(content, f)
            f.flush()
            os.fsync(f.fileno())
        return True

    def _fail(self, d: Path, reason: str) -> None:
        reason = _tenant_text(reason, d, self.runs_dir, self.data_dir)
        if self._claim(d, {"failed": reason, "at": time.time()}):
            fd = os.open(d / "log", os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
            with os.fdopen(fd, "ab") as f:
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
                    self._fail(d, _tenant_text(f"artifact rejected: {exc}", stage / "app", d))
                    return None
                except OSError as exc:
                    if exc.errno not in _BAD_ENTRY_ERRNOS:
                        log.warning("local fleet: extracting run %s failed: %s", spec.run_id, exc)
                        raise RuntimeError(f"cannot extract the artifact: {exc.strerror or exc}") from None
                    # a name the file system refuses (too long, invalid): the artifact's fault, never retried
                    name = _tenant_text(str(exc.filename or ""), stage / "app", d)
                    self._fail(d, f"artifact rejected: cannot extract {name[:120]!r}: {exc.strerror}")
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
        # the same interpreter the ec2 driver uses (python3 on the app's PATH), not the worker's venv
        return ["python3", "main.py", *argv]

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
            return not _process_alive(launched)

        if not _poll_until(started, self.start_timeout_sec):
            tail = ""
            with contextlib.suppress(OSError):
                tail = (d / "supervisor.log").read_text(errors="replace")[-2000:]
            log.error("local fleet: the supervisor in %s did not start the app: %s", d, tail)
            rel = d.relative_to(self.runs_dir) if d.is_relative_to(self.runs_dir) else d.name
            raise RuntimeError(
                f"the app of attempt {rel} did not start within {self.start_timeout_sec:.0f}s "
                "(the worker's log has the supervisor's output)"
            )


# errnos of an extraction that no retry can fix: the zip names something this file system refuses
_BAD_ENTRY_ERRNOS = {
    errno.ENAMETOOLONG,
    errno.EINVAL,
    errno.EILSEQ,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
}


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


_MOVED_RUNS_DIRS: set[Path] = set()  # warned about once per process
_ANNOUNCED: set[bool] = set()  # the isolation summary is logged once per process


@functools.cache
def network_namespaces_available() -> bool:
    """Can this process's children create a network namespace (what the supervisor does per attempt)?
    Tried once per process in a throw-away child."""
    probe = "import ctypes, sys; sys.exit(ctypes.CDLL(None, use_errno=True).unshare(0x40000000) != 0)"
    try:
        return subprocess.run([sys.executable, "-I", "-c", probe], timeout=30, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def isolation_summary(run_uids: bool, own_network: bool) -> tuple[int, str]:
    """(log level, message) saying what the ``local`` driver isolates on this host, for the worker's start."""
    if not run_uids:
        why = "the worker is not root" if not is_root() else "ORCH_LOCAL_RUN_AS_RUN_UID=false"
        return (
            logging.WARNING,
            f"local fleet: apps run as the worker's own user on the worker's network ({why}): they can read "
            "the data dir and reach the API, Temporal and SeaweedFS; only their environment is scrubbed. "
            "Run the worker as root for per-run uids and network namespaces (README: what `local` isolates)",
        )
    if not own_network:
        return (
            logging.WARNING,
            "local fleet: apps run under their own uids but on the host's network "
            "(ORCH_LOCAL_APP_NETWORK=host): they reach the API, Temporal, SeaweedFS and the internet",
        )
    return (
        logging.INFO,
        "local fleet: apps run under their own uids, each in a network namespace with only loopback",
    )


def allocate_uid(runs_dir: Path, key: str, base: int, count: int) -> int:
    """A uid in ``[base, base + count)`` reserved for ``key`` (``<run_id>/<attempt>``): the same one on every
    call for the same key, never one another key holds. Reservations are files ``runs/.uids/<uid>`` holding
    the key, created with link() (atomic, and never visible half-written); the search starts at a hash of
    the key."""
    locks = runs_dir / UID_LOCKS
    locks.mkdir(parents=True, exist_ok=True)
    _chmod(locks, 0o700)
    start = int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) % count
    tmp = locks / f".{uuid.uuid4().hex}"
    tmp.write_text(key)
    try:
        for i in range(count):
            uid = base + (start + i) % count
            try:
                os.link(tmp, locks / str(uid))
                return uid
            except FileExistsError:
                with contextlib.suppress(OSError):
                    if (locks / str(uid)).read_text() == key:
                        return uid
    finally:
        tmp.unlink(missing_ok=True)
    raise RuntimeError(f"no free run uid in [{base}, {base + count}): clean old run directories")


UID_RANGE_START, UID_RANGE_END = 2_000_000_000, 4_000_000_000  # numeric ids no /etc/passwd names; < 2**32-1


def default_uid_base(data_dir: Path, count: int) -> int:
    """The run uids' default first id for the stack whose data dir is ``data_dir`` (resolved): one of the
    ``(UID_RANGE_END - UID_RANGE_START) // count`` slots of ``count`` ids from 2000000000, chosen by a hash of
    the path. Two stacks on one host (two data dirs) so get disjoint ranges unless their hashes pick the same
    slot (1 in 2000 with the default count); every worker of one stack computes the same base."""
    slots = max(1, (UID_RANGE_END - UID_RANGE_START) // max(1, count))
    slot = int(hashlib.sha256(str(data_dir).encode()).hexdigest()[:12], 16) % slots
    return UID_RANGE_START + slot * count


UID_LOCKS = ".uids"  # under runs/; run ids never start with a dot


def _attempt_finished_at(driver: LocalFleetDriver, d: Path) -> float | None:
    """When the attempt in ``d`` reached a final state (mtime of what says so), None while it is not final."""
    launched = _read_json(d / "launched")
    if launched is None:
        # never claimed: a launch that died before starting anything; judged by the dir's age
        return d.stat().st_mtime
    handle = FleetHandle(driver.name, d.parent.name, 0, {"dir": str(d)})
    if driver.poll(handle).state not in FINAL_STATES:
        return None
    stamps = [p.stat().st_mtime for p in (d / "exit_code", d / "launched") if p.exists()]
    return max(stamps) if stamps else d.stat().st_mtime


def clean_run_dirs(settings: Settings, now: datetime | float) -> list[str]:
    """Delete the run directories of attempts that finished more than ``settings.local_run_retention_hours``
    ago (and free their run uids); return what was removed, as ``<run_id>/<attempt>`` paths relative to the
    runs dir. Running attempts are never touched. Meant for the worker's periodic maintenance."""
    driver = LocalFleetDriver(settings)
    runs = driver.runs_dir
    cutoff = (now.timestamp() if isinstance(now, datetime) else float(now)) - 3600.0 * float(
        settings.local_run_retention_hours
    )
    removed: list[str] = []
    if not runs.is_dir():
        return removed
    for run_dir in sorted(runs.iterdir()):
        if run_dir.name.startswith(".") or not run_dir.is_dir() or run_dir.is_symlink():
            continue
        for d in sorted(run_dir.iterdir()):
            if not d.is_dir() or d.is_symlink() or not d.name.isdigit():
                continue
            finished = _attempt_finished_at(driver, d)
            if finished is None or finished > cutoff:
                continue
            owner = _read_json(d / "run_uid") or {}
            if "uid" in owner:  # nothing may outlive its attempt under a uid about to be reused
                _kill_uid(int(owner["uid"]))
                remove_files_of(int(owner["uid"]))  # a supervisor killed before it could
            shutil.rmtree(d, ignore_errors=True)
            if d.exists():
                log.warning("local fleet: could not remove %s", d)
                continue
            if "uid" in owner:
                lock = runs / UID_LOCKS / str(int(owner["uid"]))
                with contextlib.suppress(OSError):
                    if lock.read_text() == f"{run_dir.name}/{d.name}":
                        lock.unlink()
            removed.append(f"{run_dir.name}/{d.name}")
        with contextlib.suppress(OSError):
            run_dir.rmdir()  # only when no attempt is left
    if removed:
        log.info("local fleet: removed %d finished run directories", len(removed))
    return removed


def _kill_uid(uid: int) -> None:
    stop_all(lambda: uid_members(uid), 0.5)
