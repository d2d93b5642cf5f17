"""The supervisor of one ``local`` fleet attempt: ``python -I -m fleets.supervisor <attempt_dir> <grace_sec>
[--uid N --gid N] -- <cmd...>``.

Started by :class:`fleets.local.LocalFleetDriver` in a new session with the app's (scrubbed) environment. It

1. forks and lets its parent exit at once, so it is adopted by init and outlives the worker;
2. claims the attempt by creating ``launched`` with O_EXCL (another launch or a terminate that came first
   wins, and this supervisor exits without starting anything);
3. with ``--isolate-net`` (the worker is root), moves itself into a new network namespace whose only
   interface is loopback (``unshare(CLONE_NEWNET)``), so the app it starts reaches no server of the stack
   (S3, SeaweedFS filer and master, Temporal, the API, the database) and no other host; the supervisor
   itself needs no network (the worker copies logs to S3 and downloads artifacts);
4. opens the app's ``log`` itself and starts the app in ``<attempt_dir>/app`` in a new process group, as the
   run's own uid/gid with no supplementary groups and ``no_new_privs`` when ``--uid`` is given (the worker
   is root), with umask 077;
5. records the app leader's ``pid`` (with its start time, to tell it from a later process with a reused pid);
6. after the leader exits, stops whatever is left of its process group and, with a run uid, every other
   process of that uid (SIGTERM, SIGKILL after the grace period): a job ends when its main process ends;
   then deletes what that uid left directly in ``/tmp``, ``/var/tmp`` and ``/dev/shm``;
7. writes ``exit_code`` atomically.

Everything it writes lives in the attempt directory, which belongs to the worker's user, so an app running
under its own uid can neither forge its exit code nor rewrite the pid the worker will signal. Only the
standard library and psutil are imported: this starts once per attempt.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable

import psutil

_PR_SET_NO_NEW_PRIVS = 38
_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_IFREQ = "16sh22x"  # struct ifreq: name, then ifr_flags in a 24-byte union


def create_time(pid: int) -> float | None:
    """Start time of the live (non-zombie) process ``pid``, None if there is none."""
    try:
        p = psutil.Process(pid)
        if p.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return None
        return p.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def group_members(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes of process group ``pgid``; zombies do not count (an init that never
    reaps orphans would otherwise keep the group "alive" forever)."""
    out = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid and p.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
                out.append(p)
        except (OSError, psutil.Error):
            continue
    return out


def uid_members(uid: int) -> list[psutil.Process]:
    """Live processes whose real, effective or saved uid is ``uid`` (a run uid: nothing else uses it)."""
    out = []
    for p in psutil.process_iter():
        try:
            if uid in p.uids() and p.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
                out.append(p)
        except psutil.Error:
            continue
    return out


def stop_all(find: Callable[[], list[psutil.Process]], grace: float) -> None:
    """SIGTERM what ``find()`` returns, SIGKILL what is left after ``grace`` s; bounded waits."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        procs = find()
        if not procs:
            return
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.send_signal(sig)  # psutil checks the pid still is that process (no reuse)
        end = time.monotonic() + wait
        while find() and time.monotonic() < end:
            time.sleep(0.05)


def _no_new_privs() -> None:
    """In the app's child before exec: setuid binaries (sudo, su) cannot raise its privileges."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


SHARED_TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")


def remove_files_of(uid: int, dirs: tuple[str, ...] = SHARED_TMP_DIRS) -> list[str]:
    """Delete what a run uid left directly in the host's shared temporary directories: every entry of
    ``dirs`` owned by ``uid`` (a directory with all it holds; no symlink is followed). Only once nothing
    runs as that uid any more (it could not recreate them). Returns the paths removed."""
    removed = []
    for top in dirs:
        try:
            entries = list(os.scandir(top))
        except OSError:
            continue
        for e in entries:
            try:
                if e.stat(follow_symlinks=False).st_uid != uid:
                    continue
                path = os.path.join(top, e.name)
                if e.is_dir(follow_symlinks=False):
                    shutil.rmtree(path)  # fd-based on Linux: a symlink swapped in is not followed
                else:
                    os.unlink(path)
                removed.append(path)
            except OSError:
                continue
    return removed


def isolate_network() -> None:
    """Move this process into a new network namespace with only the loopback interface, up (so an app may
    still talk to itself on 127.0.0.1, but to nothing outside). Needs root (CAP_SYS_ADMIN); raises OSError."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        got = fcntl.ioctl(s, _SIOCGIFFLAGS, struct.pack(_IFREQ, b"lo", 0))
        flags = struct.unpack(_IFREQ, got)[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    head, cmd = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    ap = argparse.ArgumentParser(prog="python -m fleets.supervisor")
    ap.add_argument("attempt_dir")
    ap.add_argument("grace", type=float)
    ap.add_argument("--uid", type=int)
    ap.add_argument("--gid", type=int)
    ap.add_argument("--isolate-net", action="store_true")
    a = ap.parse_args(head)
    d, grace = a.attempt_dir, a.grace
    if not cmd:
        ap.error("no command after --")

    if os.fork():  # the launcher reaps this parent at once; the supervisor below is adopted by init
        os._exit(0)

    def write_json(name: str, obj: object) -> None:
        tmp = os.path.join(d, f".{name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(d, name))

    try:
        fd = os.open(os.path.join(d, "launched"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return 0  # another launch (or a terminate) claimed this attempt first
    me = os.getpid()
    claim = {"supervisor_pid": me, "supervisor_create_time": create_time(me), "at": time.time(), "uid": a.uid}
    os.write(fd, json.dumps(claim).encode())
    os.fsync(fd)
    os.close(fd)
    # a handler, not SIG_IGN: exec() resets it, so the app gets the default dispositions
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(s, lambda *_: None)
    logfd = os.open(os.path.join(d, "log"), os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
    logf = os.fdopen(logfd, "ab", buffering=0)
    drop = a.uid is not None
    if a.isolate_net:
        try:
            isolate_network()
        except OSError as e:  # fail closed: never run the app on the host's network by accident
            msg = f"cannot isolate the app's network ({e.strerror or e})"
            logf.write(f"orchestrator: {msg}\n".encode())
            write_json("exit_code", {"exit_code": 127, "signal": None, "error": msg})
            return 0
    try:
        p = subprocess.Popen(
            cmd,
            cwd=os.path.join(d, "app"),
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            process_group=0,
            close_fds=True,
            umask=0o077,
            user=a.uid if drop else None,
            group=a.gid if drop else None,
            extra_groups=[] if drop else None,
            preexec_fn=_no_new_privs if drop else None,
        )
    except (OSError, subprocess.SubprocessError) as e:
        # no host path in what the tenant reads: the error's text and the program's own name only
        why = getattr(e, "strerror", None) or type(e).__name__
        msg = f"cannot start the app ({os.path.basename(cmd[0])}): {why}"
        logf.write(f"orchestrator: {msg}\n".encode())
        write_json("exit_code", {"exit_code": 127, "signal": None, "error": msg})
        return 0
    write_json("pid", {"pid": p.pid, "pgid": p.pid, "create_time": create_time(p.pid)})
    rc = p.wait()
    sig = -rc if rc < 0 else None
    stop_all(lambda: group_members(p.pid), grace)
    if drop:  # anything the app left outside its group (setsid daemons) still runs as the run uid
        stop_all(lambda: uid_members(a.uid), grace)
        if not uid_members(a.uid):
            remove_files_of(a.uid)  # its files in /tmp, /var/tmp, /dev/shm go with the run
    write_json("exit_code", {"exit_code": 128 + sig if sig else rc, "signal": sig})
    return 0


if __name__ == "__main__":
    sys.exit(main())
