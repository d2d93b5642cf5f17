"""/docs in a real headless Chromium (Debian's), with every request off 127.0.0.1 blocked: the OpenAPI UI's
assets come from the package, so it renders and lists the operations with no internet."""

from __future__ import annotations

import shutil
import threading

import pytest
import uvicorn

from api.main import create_app
from cli.devstack import free_port, wait_for

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def served_api(api_settings):
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(api_settings), host="127.0.0.1", port=port, log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30, "the API")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
@pytest.mark.parametrize("page_path, expect", [("/docs", "/v1/jobs"), ("/redoc", "/v1/jobs")])
def test_docs_render_offline_in_headless_chromium(served_api, page_path, expect):
    from playwright.sync_api import sync_playwright

    outside: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        page = browser.new_page()

        def only_local(route):
            url = route.request.url
            if url.startswith(served_api) or url.startswith("data:"):
                return route.continue_()
            outside.append(url)
            return route.abort()

        page.route("**/*", only_local)
        page.goto(served_api + page_path)
        # Swagger UI renders one .opblock per operation; ReDoc one entry per operation in its menu
        selector = ".opblock-summary-path" if page_path == "/docs" else "[role=menuitem], li[data-item-id]"
        page.wait_for_selector(selector, timeout=30_000)
        text = page.content()
        browser.close()
    # ReDoc's "powered by" footer shows a logo from cdn.redoc.ly; offline it is just a missing image
    outside = [u for u in outside if not u.startswith("https://cdn.redoc.ly/redoc/logo")]
    assert outside == [], f"the page tried to load {outside}"
    assert expect in text
    assert "/v1/runs/{run_id}/cancel" in text or "cancel" in text.lower()
