"""Issue 21: an upload is authenticated before its body is read and before it takes an upload slot, so slow
uploads without a valid key cannot hold every slot. In-process (httpx's ASGI transport streams the request
body chunk by chunk, so a body that never ends is an upload in progress), real DB and SeaweedFS."""

from __future__ import annotations

import asyncio

import httpx

from api.main import create_app
from tests.support.api import is_problem
from tests.support.common import ADMIN_KEY
from tests.support.zips import make_zip


async def test_unauthenticated_slow_uploads_hold_no_slot(api_settings):
    app = create_app(api_settings.model_copy(update={"max_concurrent_uploads": 1}))
    never = asyncio.Event()
    read = asyncio.Event()

    async def slow_body():
        yield b'--b\r\nContent-Disposition: form-data; name="version"\r\n\r\n1.0.0\r\n'
        read.set()
        await never.wait()  # the rest never comes
        yield b"--b--\r\n"

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=30) as http:
            created = await http.post("/v1/clients", json={"name": "slots"}, headers={"X-API-Key": ADMIN_KEY})
            key = {"X-API-Key": created.json()["api_key"]}
            ctype = {"content-type": "multipart/form-data; boundary=b"}
            slow = [
                asyncio.create_task(
                    http.post("/v1/artifacts/upload", content=slow_body(), headers=ctype | hdr)
                )
                for hdr in ({}, {"X-API-Key": "not-a-key"}, {"X-API-Key": ADMIN_KEY})
            ]
            try:
                done, _ = await asyncio.wait(slow, timeout=10)
                # refused before their bodies were read: 401 without a key or with a wrong one, 403 admin
                assert len(done) == 3, "an unauthenticated upload is still being read"
                assert [t.result().status_code for t in slow] == [401, 401, 403]
                for t in slow:
                    is_problem(t.result())
                assert not read.is_set()
                # the one slot is free for the client
                files = {"file": ("app.zip", make_zip(), "application/zip")}
                ok = await http.post(
                    "/v1/artifacts/upload", files=files, data={"version": "1.0.0"}, headers=key
                )
                assert ok.status_code == 201, ok.text
            finally:
                never.set()
                await asyncio.gather(*slow, return_exceptions=True)
