"""Artifact uploads under concurrency, load and outages, against a real uvicorn API process, real SeaweedFS
and SQLite / PostgreSQL: races answer one 201 and 409s in seconds while /healthz keeps answering, memory
stays bounded, a store outage is a 503 with Retry-After and leaves nothing behind once swept, concurrent
uploads past the bound are refused at once with 429, and the zip-bomb / long-name checks refuse at upload.
"""

from __future__ import annotations

import asyncio
import io
import secrets
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from core.db import Database
from core.s3 import ensure_bucket, s3_client
from fleets.archive import ZipRejected, extract_zip, validate_zip
from models.db import Artifact
from services.artifacts import StoreUnavailable, sweep_artifact_store, upload_artifact
from tests.support.common import make_settings, new_client
from tests.support.uploads import BreakableProxy, live_api, repeated_entry_zip
from tests.support.zips import make_zip

PROBLEM = "application/problem+json"


def _bucket() -> str:
    return f"up-{secrets.token_hex(4)}"


def _keys(settings, prefix: str = "") -> list[str]:
    s3 = s3_client(settings)
    return [
        o["Key"] for o in s3.list_objects_v2(Bucket=settings.s3_bucket, Prefix=prefix).get("Contents", [])
    ]


def _multipart(settings) -> list[dict]:
    return s3_client(settings).list_multipart_uploads(Bucket=settings.s3_bucket).get("Uploads", [])


def _rows(settings, client_id: str) -> list[Artifact]:
    db = Database(settings)
    try:
        with db.session() as s:
            return list(s.query(Artifact).filter(Artifact.client_id == client_id))
    finally:
        db.dispose()


@pytest.fixture(scope="module")
def live(db_url, s3_settings, tmp_path_factory):
    """The API process on SQLite and on PostgreSQL; room for 32 uploads at once (races, not the gate)."""
    stack = live_api(
        tmp_path_factory.mktemp("live"), db_url, s3_settings, _bucket(), max_concurrent_uploads=32
    )
    yield stack
    stack.stop()


async def _poll_healthz(base: str, stop: asyncio.Event, latencies: list[float]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        while not stop.is_set():
            t0 = time.monotonic()
            r = await http.get("/healthz")
            latencies.append(time.monotonic() - t0)
            assert r.status_code == 200
            await asyncio.sleep(0.05)


def _form(data: bytes, version: str, name: str = "app.zip") -> dict:
    return {"files": {"file": (name, data, "application/zip")}, "data": {"version": version}}


@pytest.mark.slow  # starts its own API process
async def test_same_name_version_race_one_201_rest_409_healthz_answers(live):
    """10 parallel uploads of one name and version with different bytes: exactly one stored (201), nine 409
    within seconds; /healthz answers within 2 s throughout; one object in S3 (the losers' are deleted)."""
    headers = live.client("race")
    zips = [make_zip({"main.py": f"print({i})\n"}) for i in range(10)]
    stop, latencies = asyncio.Event(), []
    poller = asyncio.create_task(_poll_healthz(live.base, stop, latencies))
    t0 = time.monotonic()
    async with httpx.AsyncClient(base_url=live.base, timeout=60, headers=headers) as http:
        results = await asyncio.gather(
            *(http.post("/v1/artifacts/upload", **_form(z, "1.0.0")) for z in zips)
        )
    elapsed = time.monotonic() - t0
    stop.set()
    await poller
    codes = sorted(r.status_code for r in results)
    assert codes == [201] + [409] * 9, [(r.status_code, r.text[:200]) for r in results]
    assert elapsed < 15, elapsed
    assert all(r.headers["content-type"].startswith(PROBLEM) for r in results if r.status_code == 409)
    assert latencies and max(latencies) < 2.0, max(latencies)
    winner = next(r.json() for r in results if r.status_code == 201)
    client_id = winner["s3_uri"].split("/")[3]
    assert [a.id for a in _rows(live.settings, client_id)] == [winner["artifact_id"]]
    assert _keys(live.settings, f"{client_id}/") == [winner["s3_uri"].split("/", 3)[3]]
    # the same bytes as the winner again, concurrently: all 200, same artifact
    same = zips[[i for i, r in enumerate(results) if r.status_code == 201][0]]
    async with httpx.AsyncClient(base_url=live.base, timeout=60, headers=headers) as http:
        again = await asyncio.gather(
            *(http.post("/v1/artifacts/upload", **_form(same, "1.0.0")) for _ in range(5))
        )
    assert {(r.status_code, r.json()["artifact_id"]) for r in again} == {(200, winner["artifact_id"])}


@pytest.mark.slow  # starts its own API process
async def test_parallel_small_uploads_of_different_names_all_stored(live):
    """20 parallel small uploads of different names: no 5xx, all 20 stored (SQLite: no 'database is
    locked'; the writes are short transactions in worker threads)."""
    headers = live.client("many")
    async with httpx.AsyncClient(base_url=live.base, timeout=60, headers=headers) as http:
        results = await asyncio.gather(
            *(
                http.post(
                    "/v1/artifacts/upload", **_form(make_zip({"main.py": f"x = {i}\n"}), "1", f"app{i}.zip")
                )
                for i in range(20)
            )
        )
    assert [r.status_code for r in results] == [201] * 20, [
        r.text[:200] for r in results if r.status_code != 201
    ]
    client_id = results[0].json()["s3_uri"].split("/")[3]
    assert len(_rows(live.settings, client_id)) == 20
    assert len(_keys(live.settings, f"{client_id}/")) == 20


def _multipart_body(boundary: str, version: str, data: bytes) -> tuple[bytes, bytes]:
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="version"\r\n\r\n{version}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="app.zip"\r\n'
        "Content-Type: application/zip\r\n\r\n"
    ).encode()
    return head + data, f"\r\n--{boundary}--\r\n".encode()


@pytest.mark.slow  # starts its own API process
async def test_uploads_past_the_bound_are_refused_at_once_with_429(s3_settings, tmp_path):
    """max_concurrent_uploads=2: two uploads whose bodies are still arriving hold both slots; another is
    answered 429 + Retry-After (problem+json) immediately, without its body being read; once the two finish,
    uploads are accepted again."""
    stack = live_api(
        tmp_path, f"sqlite:///{tmp_path / 'gate.db'}", s3_settings, _bucket(), max_concurrent_uploads=2
    )
    try:
        headers = stack.client("gate")
        release = asyncio.Event()
        boundary = "b" + secrets.token_hex(8)

        def slow_body(i: int):
            first, last = _multipart_body(boundary, f"slow{i}", make_zip({"main.py": f"s = {i}\n"}))

            async def gen():
                yield first
                await release.wait()  # the rest of the body arrives only when the test says so
                yield last

            return gen()

        ctype = {"content-type": f"multipart/form-data; boundary={boundary}"}
        async with httpx.AsyncClient(base_url=stack.base, timeout=60, headers=headers) as http:
            slow = [
                asyncio.create_task(http.post("/v1/artifacts/upload", content=slow_body(i), headers=ctype))
                for i in range(2)
            ]
            # both hold their slot once the API reports them in progress (httpx sends a whole body before it
            # reads the answer, so the slot is observed on /metrics rather than inferred from a response)
            deadline = time.monotonic() + 15
            while "orch_uploads_in_progress 2.0" not in (await http.get("/metrics")).text:
                assert time.monotonic() < deadline, "the two slow uploads never both held a slot"
                await asyncio.sleep(0.05)
            t0 = time.monotonic()
            refused = await http.post("/v1/artifacts/upload", **_form(make_zip({"main.py": "q = 1\n"}), "q1"))
            took = time.monotonic() - t0
            assert refused.status_code == 429, refused.text
            assert took < 2.0
            assert refused.headers["content-type"].startswith(PROBLEM)
            assert int(refused.headers["retry-after"]) > 0
            assert refused.json()["status"] == 429 and "limit is 2" in refused.json()["detail"]
            release.set()
            done = await asyncio.gather(*slow)
            assert [d.status_code for d in done] == [201, 201], [d.text for d in done]
            r = await http.post(
                "/v1/artifacts/upload", **_form(make_zip({"main.py": "after = 1\n"}), "after")
            )
            assert r.status_code == 201, r.text
    finally:
        stack.stop()


@pytest.mark.slow  # starts its own API process
async def test_s3_down_is_503_with_retry_after_in_seconds(s3_settings, tmp_path):
    """The store unreachable (nothing listens on its port): 503 + Retry-After in seconds, nothing stored;
    an existing (name, version) still answers 200/409 from the database alone."""
    dead = {**s3_settings, "s3_endpoint_url": f"http://127.0.0.1:{_closed_port()}"}
    stack = live_api(tmp_path, f"sqlite:///{tmp_path / 'down.db'}", dead, _bucket())
    try:
        headers = stack.client("down")
        t0 = time.monotonic()
        r = stack.http.post("/v1/artifacts/upload", headers=headers, **_form(make_zip(), "1.0.0"))
        took = time.monotonic() - t0
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith(PROBLEM) and int(r.headers["retry-after"]) > 0
        assert "S3" in r.json()["detail"] and "127.0.0.1" not in r.json()["detail"]
        print(f"\n503 after {took:.1f} s")
        assert took < 15, took
        assert stack.http.get("/v1/artifacts", headers=headers).json()["items"] == []
        assert stack.http.get("/healthz").status_code == 200
    finally:
        stack.stop()


def _closed_port() -> int:
    from cli.devstack import free_port

    return free_port()


# ---------------------------------------------------------------- failed transfers leave no multipart
def _settings_for(tmp_path: Path, db_url: str, s3: dict[str, str], **over):
    from core.migrate import upgrade

    settings = make_settings(tmp_path, database_url=db_url, s3_bucket=_bucket(), **(s3 | over))
    upgrade(settings)
    return settings


class FailingSpool(io.BytesIO):
    """A spool whose disk read fails once ``fail_after`` bytes were read (an I/O error mid-transfer)."""

    def __init__(self, data: bytes, fail_after: int):
        super().__init__(data)
        self.fail_after, self.armed = fail_after, False

    def read(self, n: int = -1) -> bytes:
        if self.armed and self.tell() >= self.fail_after:
            raise OSError(5, "Input/output error")
        return super().read(n)


def _big_zip(mib: int, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("main.py", "print('big')\n")
        z.writestr("blob.bin", secrets.token_bytes(mib * 1024 * 1024))
    return buf.getvalue()


def test_failed_multipart_transfer_is_aborted(tmp_path, s3_settings):
    """A failure after two parts were sent: the multipart upload is aborted, nothing is left in the store."""
    settings = _settings_for(
        tmp_path, f"sqlite:///{tmp_path / 'm.db'}", s3_settings, s3_part_size_bytes=5 << 20
    )
    s3 = s3_client(settings)
    ensure_bucket(s3, settings.s3_bucket)
    db = Database(settings)
    try:
        with db.session() as s:
            from models.db import Client

            s.add(Client(id="cli_mp", name="mp", api_key_hash="h" * 64, api_key_prefix="x"))
        spool = FailingSpool(_big_zip(14), fail_after=10 << 20)
        # the checks read the whole spool first: the failure is armed once the multipart upload has started
        s3.meta.events.register(
            "after-call.s3.CreateMultipartUpload", lambda **_: setattr(spool, "armed", True)
        )
        with pytest.raises(OSError, match="Input/output"):
            upload_artifact(settings, db, s3, client_id="cli_mp", name="app.zip", version="1", fileobj=spool)
        assert spool.armed and spool.tell() >= 10 << 20  # the failure came mid-transfer, after two parts
        assert _multipart(settings) == []
        assert _keys(settings) == []
        with db.session() as s:
            assert s.query(Artifact).count() == 0
    finally:
        db.dispose()


def test_store_outage_mid_transfer_is_503_and_the_sweeper_aborts_what_is_left(
    tmp_path, s3_settings, seaweedfs
):
    """The store goes away mid-transfer (a proxy in front of SeaweedFS drops every connection): the upload
    fails in seconds with StoreUnavailable (503) and nothing is stored; the abort could not reach the store,
    so once it is back the sweeper aborts the incomplete multipart upload."""
    proxy = BreakableProxy(seaweedfs.ports["s3"])
    via_proxy = {**s3_settings, "s3_endpoint_url": f"http://127.0.0.1:{proxy.port}"}
    settings = _settings_for(
        tmp_path, f"sqlite:///{tmp_path / 'o.db'}", via_proxy, s3_part_size_bytes=5 << 20, s3_max_attempts=2
    )
    direct = make_settings(tmp_path, s3_bucket=settings.s3_bucket, **s3_settings)
    s3 = s3_client(settings)
    ensure_bucket(s3, settings.s3_bucket)
    db = Database(settings)
    try:
        with db.session() as s:
            from models.db import Client

            s.add(Client(id="cli_out", name="o", api_key_hash="o" * 64, api_key_prefix="x"))
        data = _big_zip(14, 1)

        class BreakingSpool(io.BytesIO):
            transferring = False

            def read(self, n: int = -1) -> bytes:
                if self.transferring and self.tell() >= 5 << 20 and proxy.up.is_set():
                    proxy.break_now()  # after the first part went through
                return super().read(n)

        spool = BreakingSpool(data)
        s3.meta.events.register(
            "after-call.s3.CreateMultipartUpload", lambda **_: setattr(spool, "transferring", True)
        )
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailable):
            upload_artifact(settings, db, s3, client_id="cli_out", name="app.zip", version="1", fileobj=spool)
        assert time.monotonic() - t0 < 20
        proxy.restore()
        left = _multipart(direct)
        assert len(left) == 1 and left[0]["Key"].startswith("cli_out/1/art_")
        assert _keys(direct) == []
        with db.session() as s:
            assert s.query(Artifact).count() == 0
        # within the grace period the sweeper leaves it (it could be an upload in flight) ...
        assert sweep_artifact_store(direct, db, s3_client(direct), datetime.now(UTC)).multipart_aborted == 0
        # ... after it, aborts it
        later = datetime.now(UTC) + timedelta(seconds=direct.artifact_sweep_grace_sec + 60)
        assert sweep_artifact_store(direct, db, s3_client(direct), later).multipart_aborted == 1
        assert _multipart(direct) == []
    finally:
        db.dispose()
        proxy.close()


def test_missing_bucket_is_created_on_upload(tmp_path, s3_settings):
    """The API started while the store was down (no bucket made at start-up): the first upload once the
    store is back creates the bucket instead of failing every upload."""
    settings = _settings_for(tmp_path, f"sqlite:///{tmp_path / 'b.db'}", s3_settings)
    s3 = s3_client(settings)
    db = Database(settings)
    try:
        with db.session() as s:
            from models.db import Client

            s.add(Client(id="cli_nb", name="nb", api_key_hash="n" * 64, api_key_prefix="x"))
        result = upload_artifact(
            settings, db, s3, client_id="cli_nb", name="app.zip", version="1", fileobj=io.BytesIO(make_zip())
        )
        assert result.created and _keys(settings) == [result.artifact.s3_key]
    finally:
        db.dispose()


# ---------------------------------------------------------------- sweeper
def test_sweeper_removes_orphans_and_stale_multipart_keeps_referenced(api, api_settings):
    cid, h = new_client(api, "sweep")
    settings = api_settings.model_copy(update={"s3_bucket": _bucket()})
    s3 = s3_client(settings)
    ensure_bucket(s3, settings.s3_bucket)
    db = Database(settings)
    try:
        referenced = f"{cid}/1.0.0/art_{'a' * 20}/app.zip"
        orphan = f"{cid}/1.0.0/art_{'b' * 20}/app.zip"
        not_an_artifact = f"runs/{cid}/run_x/1/log.txt"
        for key in (referenced, orphan, not_an_artifact):
            s3.put_object(Bucket=settings.s3_bucket, Key=key, Body=b"zip")
        with db.session() as s:
            s.add(
                Artifact(
                    id=f"art_{'a' * 20}",
                    client_id=cid,
                    name="app.zip",
                    version="sweep-1",
                    sha256="0" * 64,
                    size_bytes=3,
                    entry_point="main.py",
                    s3_bucket=settings.s3_bucket,
                    s3_key=referenced,
                )
            )
        stale = f"{cid}/2.0.0/art_{'c' * 20}/app.zip"
        s3.create_multipart_upload(Bucket=settings.s3_bucket, Key=stale)

        now = datetime.now(UTC)
        first = sweep_artifact_store(settings, db, s3, now)  # all younger than the grace period
        assert (first.objects_deleted, first.multipart_aborted) == (0, 0)
        assert sorted(_keys(settings)) == sorted([referenced, orphan, not_an_artifact])

        later = now + timedelta(seconds=settings.artifact_sweep_grace_sec + 60)
        res = sweep_artifact_store(settings, db, s3, later)
        assert (res.objects_deleted, res.multipart_aborted, res.objects_kept_referenced) == (1, 1, 1)
        assert sorted(_keys(settings)) == sorted([referenced, not_an_artifact])
        assert _multipart(settings) == []
        assert sweep_artifact_store(settings, db, s3, later).objects_deleted == 0  # idempotent
    finally:
        db.dispose()


# ---------------------------------------------------------------- zip checks at upload
def upload(api, headers, data: bytes, version: str = "1.0.0", name: str = "app.zip"):
    return api.post("/v1/artifacts/upload", headers=headers, **_form(data, version, name))


def test_small_entry_bomb_is_refused_at_upload(api, api_settings):
    """2,047 entries of (1 MiB - 1) zeros each (every one under the per-entry ratio floor): a ~2 MB zip that
    expands to 2 GiB. Refused quickly by the whole-archive checks, without inflating anything."""
    cid, h = new_client(api, "smallbomb")
    bomb = repeated_entry_zip(2047, 1024 * 1024 - 1, {"main.py": b"print(1)\n"})
    assert len(bomb) < 3 * 1024 * 1024
    t0 = time.monotonic()
    r = upload(api, h, bomb)
    assert time.monotonic() - t0 < 5
    assert r.status_code == 422, r.text
    assert "limit" in r.json()["detail"] and "zip bomb" in r.json()["detail"]
    # the whole-archive ratio alone (under the total-size limit): 200 entries = 200 MiB from ~200 KB
    ratio_only = repeated_entry_zip(200, 1024 * 1024 - 1, {"main.py": b"print(1)\n"})
    r = upload(api, h, ratio_only, version="2")
    assert r.status_code == 422 and "whole-archive compression ratio" in r.json()["detail"], r.text
    assert api.get("/v1/artifacts", headers=h).json()["items"] == []


@pytest.mark.parametrize(
    ("entry", "limit"),
    [
        ("lib/" + "n" * 300 + ".py", "255 bytes per file or directory name"),
        ("/".join(["d"] * 40) + "/x.py", "the limit is 32"),
        ("/".join(["x" * 200] * 6) + "/y.py", "the limit is 1024 bytes"),
    ],
    ids=["300-char name", "depth 41", "path of 1.2 KB"],
)
def test_long_or_deep_entry_names_are_refused_at_upload(api, entry, limit):
    _, h = new_client(api, "names")
    r = upload(api, h, make_zip({"main.py": "print(1)\n", entry: "x = 1\n"}))
    assert r.status_code == 422, r.text
    assert limit in r.json()["detail"] and r.json()["errors"][0]["path"] == "file"
    assert len(r.json()["detail"]) < 400  # the name is shortened in the message


def test_extraction_errors_never_name_the_host_path(tmp_path):
    """An OS error while extracting (here ENAMETOOLONG: the host's extraction dir is deep) is reported with
    the archive-relative name and the reason, never the host path."""
    dest = tmp_path
    while len(str(dest)) < 3800:
        dest = dest / ("p" * 200)
    # 4000 long whatever tmp_path is (xdist makes it longer): main.py fits PATH_MAX, lib/qqq.../mod.py not
    dest = dest / ("p" * (4000 - len(str(dest)) - 1))
    dest.mkdir(parents=True)
    data = make_zip({"main.py": "print(1)\n", "lib/" + "q" * 200 + "/mod.py": "x = 1\n"})
    settings = make_settings(tmp_path)
    validate_zip(io.BytesIO(data), settings)  # acceptable by itself
    with pytest.raises(ZipRejected) as exc:
        extract_zip(io.BytesIO(data), dest, settings)
    msg = str(exc.value)
    assert "File name too long" in msg and "lib/qqq" in msg
    assert str(tmp_path) not in msg and "ppppp" not in msg


# ---------------------------------------------------------------- memory (slow)
def _hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


RSS_BOUND_MB = 400


@pytest.mark.slow
async def test_parallel_large_uploads_keep_api_memory_bounded(s3_settings, tmp_path):
    """8 parallel 150 MB uploads: the API process's peak RSS (VmHWM) stays under 400 MB (it was ~1 GB):
    the form parser spools to disk, hashing and checks stream 1 MiB at a time, S3 gets one 8 MiB part at
    a time per upload."""
    stack = live_api(
        tmp_path, f"sqlite:///{tmp_path / 'mem.db'}", s3_settings, _bucket(), max_concurrent_uploads=8
    )
    try:
        headers = stack.client("mem")
        path = tmp_path / "big.zip"
        path.write_bytes(_big_zip(150))
        before = _hwm_kib(stack.api.proc.pid)

        async def one(i: int):
            with open(path, "rb") as f:
                async with httpx.AsyncClient(base_url=stack.base, timeout=600, headers=headers) as http:
                    return await http.post(
                        "/v1/artifacts/upload",
                        files={"file": ("big.zip", f, "application/zip")},
                        data={"version": f"v{i}"},
                    )

        t0 = time.monotonic()
        results = await asyncio.gather(*(one(i) for i in range(8)))
        took = time.monotonic() - t0
        assert [r.status_code for r in results] == [201] * 8, [r.text[:200] for r in results]
        peak_mb = _hwm_kib(stack.api.proc.pid) / 1024
        print(f"\n8 x 150 MB uploads in {took:.1f} s; API VmHWM {before / 1024:.0f} MB -> {peak_mb:.0f} MB")
        assert peak_mb < RSS_BOUND_MB, peak_mb
    finally:
        stack.stop()
