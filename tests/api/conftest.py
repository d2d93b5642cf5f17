"""Fixtures of the API area: the real app served by uvicorn in a thread on 127.0.0.1 (for the CLI tests)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import uvicorn

from api.main import create_app
from cli.devstack import free_ports, wait_for


@pytest.fixture(scope="module")
def live_url(api_settings, temporal_dev_server) -> Iterator[str]:
    settings = api_settings.model_copy(
        update={
            "temporal_address": f"127.0.0.1:{temporal_dev_server.ports['grpc']}",
            "temporal_task_queue": "no-worker-cli",
        }
    )
    port = free_ports(1)[0]
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 60, "the in-process API")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)
