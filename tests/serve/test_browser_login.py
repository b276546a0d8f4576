"""Issue 3 in a real browser: with VAESEARCH_AUTH set, the app's own login page (serve.login) refuses a wrong
password with a message, logs in with the right one and the app then works (generate a grid)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_harness import chromium_page
from serve_harness import Server, running_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

USER, PASSWORD = "tester", "s3cret-pw"


@pytest.fixture(scope="module")
def server(experiment: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_app(["--experiment", str(experiment)], tmp_path_factory.mktemp("browser-login-app"),
                     VAESEARCH_AUTH=f"{USER}:{PASSWORD}") as running:
        yield running


def log_in(page, password: str) -> None:
    page.get_by_label("User name").fill(USER)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_log_in_and_generate(server: Server, tmp_path: Path) -> None:
    with chromium_page(server.url, failure_shot=tmp_path / "login.png") as page:
        assert "generate" not in page.content().lower()
        log_in(page, "wrong-pw")
        page.get_by_text("Incorrect user name or password.").wait_for()
        log_in(page, PASSWORD)
        page.locator("#generate-button").click()
        samples = page.locator("#generate-samples img")
        samples.wait_for(state="visible")
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=samples.element_handle())
        assert samples.evaluate("img => img.naturalWidth") > 0
    assert "Traceback" not in server.output() and PASSWORD not in server.output()
