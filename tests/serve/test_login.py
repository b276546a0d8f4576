"""Issue 3 against a real server with VAESEARCH_AUTH set: an anonymous visitor learns nothing about the model, the
experiment or the API on any route (no trial id, no hyperparameter name, no endpoint name); once logged in, the
same routes show them and the app works."""

from __future__ import annotations

import http.cookiejar
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client
from serve_harness import Server, running_app

from serve.login import COOKIE

pytestmark = pytest.mark.slow

USER, PASSWORD = "tester", "s3cret-pw"
TRIAL_IDS = ("t_wide", "t_narrow", "t_failed")
HYPERPARAMETERS = ("latent_width", "reparam_width", "conv_channels", "kl_warmup_epochs", "lr_schedule", "batch_size")
ENDPOINTS = ("generate", "switch_model", "reconstruct", "interpolate", "model_info", "search_progress")
SECRETS = (*TRIAL_IDS, *HYPERPARAMETERS, *ENDPOINTS)
GET_ROUTES = (
    "", "?view=api", "config", "config/", "config?page=", "gradio_api/info", "gradio_api/info?all_endpoints=true",
    "gradio_api/openapi.json", "openapi.json", "docs", "redoc", "gradio_api/runs",
    "gradio_api/deep_link?session_hash=a",
    "gradio_api/file={uploads}/vaesearch/x.png", "file={uploads}/vaesearch/x.png", "gradio_api/queue/status",
    "gradio_api/queue/data?session_hash=a", "gradio_api/heartbeat/a", "gradio_api/startup-events", "gradio_api/app_id",
    "gradio_api/user", "gradio_api/token", "gradio_api/login_check", "gradio_api/upload_progress?upload_id=a",
    "gradio_api/call/generate/abc", "gradio_api/mcp/schema", "gradio_api/run-history/records", "manifest.json",
    "monitoring", "theme.css", "favicon.ico", "static/img/logo_nosize.svg", "logout/", "gradio_api/startup-events",
)
POST_ROUTES = (
    ("gradio_api/queue/join", {"fn_index": 0, "data": [], "session_hash": "a"}),
    ("gradio_api/call/generate", {"data": [3, 16, 0.75, 0, 1, None]}),
    ("gradio_api/call/switch_model", {"data": ["t_narrow"]}),
    ("gradio_api/run/generate", {"data": []}),
    ("gradio_api/component_server", {"data": {}, "component_id": 1, "session_hash": "a", "fn_name": "accept_blobs"}),
    ("gradio_api/upload", {"files": []}),
    ("gradio_api/cancel", {"session_hash": "a", "fn_index": 0, "event_id": "e"}),
)


@pytest.fixture(scope="module")
def server(experiment: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_app(["--experiment", str(experiment)], tmp_path_factory.mktemp("login-app"),
                     VAESEARCH_AUTH=f"{USER}:{PASSWORD}") as running:
        yield running


def fetch(opener: urllib.request.OpenerDirector, url: str, body: dict | None = None) -> tuple[int, str]:
    """(status, headers and body as text) of a GET, or of a JSON POST when ``body`` is given."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, f"{response.headers}\n{response.read().decode(errors='replace')}"
    except urllib.error.HTTPError as exc:
        return exc.code, f"{exc.headers}\n{exc.read().decode(errors='replace')}"


def every_route(server: Server, opener: urllib.request.OpenerDirector) -> dict[str, tuple[int, str]]:
    uploads = urllib.parse.quote(str(server.log.parent / "gradio"))
    answers = {route: fetch(opener, server.url + route.format(uploads=uploads)) for route in GET_ROUTES}
    answers.update({f"POST {route}": fetch(opener, server.url + route, body) for route, body in POST_ROUTES})
    return answers


def no_redirects() -> urllib.request.OpenerDirector:
    class Stay(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    return urllib.request.build_opener(Stay())


def test_an_anonymous_visitor_learns_nothing_on_any_route(server: Server) -> None:
    answers = every_route(server, no_redirects())
    leaks = {route: [word for word in SECRETS if word in text] for route, (_status, text) in answers.items()}
    assert not {route: words for route, words in leaks.items() if words}, leaks
    assert {route: status for route, (status, _text) in answers.items() if status != 401} == {
        "": 200, "?view=api": 200,  # the login page
        "logout/": 303,  # a logout with nothing to end
        "gradio_api/startup-events": 200}  # Gradio's launch() checks the server with it: true or false
    assert "Log in" in answers[""][1] and "<form" in answers[""][1]


def test_after_login_the_routes_show_the_app_and_the_api_works(server: Server, tmp_path: Path) -> None:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login = urllib.request.Request(server.url + "login", data=urllib.parse.urlencode(
        {"username": USER, "password": PASSWORD}).encode())
    with opener.open(login, timeout=30) as response:
        assert response.status == 200 and COOKIE in {cookie.name for cookie in jar}
    status, config = fetch(opener, server.url + "config")
    assert status == 200 and all(word in config for word in ("generate", "switch_model", "t_narrow", "latent_width"))
    client = Client(server.url, verbose=False, auth=(USER, PASSWORD), download_files=str(tmp_path))
    info, _board, _served = client.predict(api_name="/model_info")
    assert info["trial_id"] == "t_wide" and info["model_config"]["latent_width"] == 96
    assert PASSWORD not in server.output() and "Traceback" not in server.output()
