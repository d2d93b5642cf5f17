"""The EC2 bootstrap script (fleets/userdata.sh) run for real with ``sh`` against SeaweedFS presigned URLs.

Only the power-off is skipped (``ORCH_NO_POWEROFF=1``) and the work dir moved (``ORCH_WORK_DIR``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from fleets.ec2 import USERDATA_MAX_BYTES, render_userdata, result_prefix
from tests.support.fleet import FLEET_BUCKET, make_app_zip, new_run_id, sha256, wait_until

PRINT_APP = {
    "main.py": """
import os, sys
print("app argv", sys.argv[1:])
for k in ("ORCH_RUN_ID", "ORCH_DATA_URI", "ORCH_ARGS"):
    print(k + "=" + os.environ[k])
a = dict(x[2:].split("=", 1) for x in sys.argv[1:])
open(a["marker"], "w").write("ran")
sys.exit(int(a.get("code", "0")))
"""
}

SH_APP = {"run.sh": 'echo "run.sh says $1"\nexit 0\n'}

WAIT_APP = {
    "main.py": """
import os, sys, time
a = dict(x[2:].split("=", 1) for x in sys.argv[1:])
print("started and waiting", flush=True)
end = time.time() + 30
while not os.path.exists(a["release"]) and time.time() < end:
    time.sleep(0.05)
"""
}

SHELLS = [s for s in (["sh"], ["bash", "--posix"]) if shutil.which(s[0])]


class Attempt:
    """One rendered attempt: artifact in S3, presigned URLs, the script on disk."""

    def __init__(
        self,
        s3,
        tmp_path: Path,
        files: dict,
        args: dict,
        *,  # noqa: F811
        tamper: bool = False,
        missing: bool = False,
    ):
        self.s3, self.run_id = s3, new_run_id()
        data = make_app_zip(files)
        key = f"client_test/apps/{self.run_id}.zip"
        if not missing:
            s3.put_object(Bucket=FLEET_BUCKET, Key=key, Body=data + b"tampered" if tamper else data)
        prefix = result_prefix("client_test", self.run_id, 1)
        self.log_key, self.result_key = prefix + "log", prefix + "result.json"

        def url(op, k):
            return s3.generate_presigned_url(op, Params={"Bucket": FLEET_BUCKET, "Key": k}, ExpiresIn=600)

        self.script = tmp_path / "userdata.sh"
        self.script.write_text(
            render_userdata(
                artifact_url=url("get_object", key),
                artifact_sha256=sha256(data),
                log_url=url("put_object", self.log_key),
                result_url=url("put_object", self.result_key),
                run_id=self.run_id,
                data_uri="s3://data/in/",
                args=args,
                log_interval_sec=1,
            )
        )
        self.work = tmp_path / "work"

    def run(self, shell=("sh",), path: str | None = None, timeout: float = 30):
        env = {**os.environ, "ORCH_NO_POWEROFF": "1", "ORCH_WORK_DIR": str(self.work)}
        if path is not None:
            env["PATH"] = path
        argv = [shutil.which(shell[0]), *shell[1:], str(self.script)]  # found before PATH is narrowed
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)

    def get(self, key: str) -> bytes | None:
        try:
            return self.s3.get_object(Bucket=FLEET_BUCKET, Key=key)["Body"].read()
        except ClientError:
            return None

    @property
    def result(self) -> dict | None:
        body = self.get(self.result_key)
        return json.loads(body) if body else None

    @property
    def log(self) -> str:
        return (self.get(self.log_key) or b"").decode()


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
def test_rendered_script_is_valid_posix_sh(s3, tmp_path, shell):  # noqa: F811
    a = Attempt(s3, tmp_path, PRINT_APP, {"x": "1"})
    subprocess.run([*shell, "-n", str(a.script)], check=True)
    assert len(a.script.read_bytes()) < USERDATA_MAX_BYTES


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
def test_runs_app_and_uploads_log_and_exit_code(s3, tmp_path, shell):  # noqa: F811
    marker = tmp_path / "marker"
    a = Attempt(s3, tmp_path, PRINT_APP, {"marker": str(marker), "alpha": 1, "name": "x y"})
    proc = a.run(shell)
    assert proc.returncode == 0, proc.stderr
    assert a.result == {"phase": "app", "exit_code": 0, "reason": "app exited with code 0"}
    assert marker.read_text() == "ran"
    log = a.log
    assert f"app argv ['--alpha=1', '--marker={marker}', '--name=x y']" in log
    assert f"ORCH_RUN_ID={a.run_id}" in log
    assert "ORCH_DATA_URI=s3://data/in/" in log
    assert 'ORCH_ARGS={"alpha": 1, "marker": "' in log
    assert "starting: python3 main.py (sha256 ok)" in log
    assert "app exited with code 0" in log


def test_app_exit_code_is_reported(s3, tmp_path):  # noqa: F811
    a = Attempt(s3, tmp_path, PRINT_APP, {"marker": str(tmp_path / "m"), "code": 3})
    assert a.run().returncode == 0
    assert a.result["phase"] == "app" and a.result["exit_code"] == 3


def test_run_sh_entry_point(s3, tmp_path):  # noqa: F811
    a = Attempt(s3, tmp_path, SH_APP, {"greeting": "hello"})
    assert a.run().returncode == 0
    assert a.result["exit_code"] == 0
    assert "run.sh says --greeting=hello" in a.log


def test_tampered_artifact_is_refused(s3, tmp_path):  # noqa: F811
    marker = tmp_path / "marker"
    a = Attempt(s3, tmp_path, PRINT_APP, {"marker": str(marker)}, tamper=True)
    a.run()
    assert a.result == {"phase": "bootstrap", "exit_code": None, "reason": "bootstrap: checksum mismatch"}
    assert not marker.exists()
    assert not (a.work / "app").exists()
    assert "checksum mismatch" in a.log


def test_download_failure_is_a_bootstrap_failure(s3, tmp_path):  # noqa: F811
    a = Attempt(s3, tmp_path, PRINT_APP, {"marker": str(tmp_path / "m")}, missing=True)
    a.run()
    assert a.result == {
        "phase": "bootstrap",
        "exit_code": None,
        "reason": "bootstrap: artifact download failed",
    }


def test_args_cannot_inject_shell(s3, tmp_path):  # noqa: F811
    pwned = tmp_path / "pwned"
    evil = f"'; touch {pwned}; echo '$(touch {pwned})`touch {pwned}`"
    a = Attempt(s3, tmp_path, PRINT_APP, {"marker": str(tmp_path / "m"), "evil": evil})
    assert a.run().returncode == 0
    assert not pwned.exists()
    assert f"'--evil={evil}'" in a.log or f'"--evil={evil}"' in a.log


def test_log_is_streamed_while_the_app_runs(s3, tmp_path):  # noqa: F811
    release = tmp_path / "release"
    a = Attempt(s3, tmp_path, WAIT_APP, {"release": str(release)})
    env = {**os.environ, "ORCH_NO_POWEROFF": "1", "ORCH_WORK_DIR": str(a.work)}
    proc = subprocess.Popen(["sh", str(a.script)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: "started and waiting" in a.log, 15, "the log upload while running")
        assert a.result is None  # still running: no result yet
        release.touch()
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert a.result["exit_code"] == 0


def test_works_without_curl_unzip_and_sha256sum(s3, tmp_path):  # noqa: F811
    """A minimal image may lack curl/unzip/sha256sum: the script falls back to python3."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(os.path.realpath(sys.executable), bin_dir / "python3")
    for tool in ("date", "mkdir", "rm", "sleep", "touch", "cut", "cat"):
        found = shutil.which(tool)
        if found:
            os.symlink(found, bin_dir / tool)
    marker = tmp_path / "marker"
    a = Attempt(s3, tmp_path, PRINT_APP, {"marker": str(marker)})
    proc = a.run(path=str(bin_dir))
    assert proc.returncode == 0, proc.stderr
    assert a.result["exit_code"] == 0 and marker.exists()


def test_oversized_args_refused():
    with pytest.raises(ValueError, match="user-data"):
        render_userdata(
            artifact_url="u",
            artifact_sha256="0" * 64,
            log_url="l",
            result_url="r",
            run_id="run_1",
            data_uri=None,
            args={"big": "x" * 20000},
        )
    with pytest.raises(ValueError, match="sha256"):
        render_userdata(
            artifact_url="u",
            artifact_sha256="nothex",
            log_url="l",
            result_url="r",
            run_id="run_1",
            data_uri=None,
            args={},
        )


def test_sigterm_reports_nothing(s3, tmp_path):  # noqa: F811
    """When the instance itself goes away (spot reclaim, terminate) the script must not report the app's
    dying exit code: the orchestrator reads the instance's state reason instead."""
    release = tmp_path / "release"
    a = Attempt(s3, tmp_path, WAIT_APP, {"release": str(release)})
    env = {**os.environ, "ORCH_NO_POWEROFF": "1", "ORCH_WORK_DIR": str(a.work)}
    proc = subprocess.Popen(["sh", str(a.script)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: "started and waiting" in a.log, 15, "the app to start")
        proc.terminate()
        assert proc.wait(10) == 143
    finally:
        release.touch()  # let the orphaned app end
        if proc.poll() is None:
            proc.kill()
    assert a.result is None
    # the log streamer (a subshell running the same script) notices the stop file and ends too
    wait_until(lambda: not script_processes(a.script), 10, "the log streamer to stop")


def script_processes(script: Path) -> list[int]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(script).encode() in cmd and state != "Z":
            out.append(int(pid))
    return out
