"""The login in front of the app (VAESEARCH_AUTH=user:password): before it, a visitor learns nothing.

Gradio's own login (launch(auth=...)) serves its login page with the whole API description embedded (every
endpoint, its parameters, their choices: hyperparameter names, trial ids) and leaves several routes open. Here
the app owns the login instead, through public hooks: LoginGate, an ASGI middleware on the app Gradio builds,
answers an anonymous visitor on every route with 401, except:

* GET / : a plain login page (it names nothing of the app);
* POST /login (form fields username and password, as gradio_client's Client(auth=...) sends them): a session
  cookie on success, 401 otherwise;
* /logout: the session ends;
* GET /gradio_api/startup-events: Gradio's launch() calls it, without a session, to check that the server
  answers (it runs the app's startup events once and answers true or false).

Gradio is given ``Sessions.user_of`` as its ``auth_dependency`` (launch's public hook for external logins), so
its own routes check the same session as a second line.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections import OrderedDict
from urllib.parse import parse_qs

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from serve.asgi import BodyTooLarge, read_body, respond, respond_json

COOKIE = "vaesearch-session"
MAX_SESSIONS = 1024  # logins kept; the oldest session ends first
MAX_LOGIN_BODY = 4096  # bytes of a login form
OPEN_PATHS = ("/gradio_api/startup-events",)  # what an anonymous request may reach of Gradio's routes
LOGIN_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Log in</title>
<link rel="icon" href="data:,">
<style>
body { font-family: system-ui, sans-serif; display: flex; justify-content: center; margin-top: 12vh; }
form { display: flex; flex-direction: column; gap: 0.8rem; width: 18rem; }
label { display: flex; flex-direction: column; gap: 0.3rem; }
input, button { font-size: 1rem; padding: 0.5rem; }
#message { color: #b00020; min-height: 1.2rem; }
</style>
</head>
<body>
<form id="login">
<h1>Log in</h1>
<label>User name <input name="username" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Log in</button>
<p id="message" role="alert"></p>
</form>
<script>
document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const response = await fetch("login", {method: "POST", body: new URLSearchParams(new FormData(event.target))});
  if (response.ok) {
    window.location.reload();
  } else {
    document.getElementById("message").textContent = "Incorrect user name or password.";
  }
});
</script>
</body>
</html>
"""


class Sessions:
    """The one account (``user``, ``password``) and its logged-in sessions: a random token per login, kept by the
    client in the COOKIE cookie."""

    def __init__(self, user: str, password: str, max_sessions: int = MAX_SESSIONS) -> None:
        self._user = user
        self._password = password
        self._max_sessions = max_sessions
        self._tokens: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, user: str, password: str) -> bool:
        """Whether ``user`` and ``password`` are the account's (compared in constant time)."""
        same_user = hmac.compare_digest(user.encode(), self._user.encode())
        same_password = hmac.compare_digest(password.encode(), self._password.encode())
        return same_user and same_password

    def open(self) -> str:
        """A new session's token."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = self._user
            while len(self._tokens) > self._max_sessions:
                self._tokens.popitem(last=False)
        return token

    def close(self, token: str | None) -> None:
        with self._lock:
            self._tokens.pop(token or "", None)

    def user_of(self, connection: HTTPConnection) -> str | None:
        """The logged-in user of a request (a FastAPI request, or any starlette connection), or None. This is
        Gradio's ``auth_dependency``."""
        token = connection.cookies.get(COOKIE)
        with self._lock:
            return self._tokens.get(token) if token else None


class LoginGate:
    """ASGI middleware: with ``sessions`` set, a request without a logged-in session gets the login page (GET /),
    the login itself (POST /login) or 401, and reaches nothing else of the app."""

    def __init__(self, app: ASGIApp, sessions: Sessions | None) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.sessions is None:
            await self.app(scope, receive, send)
            return
        path = scope["path"].rstrip("/") or "/"
        if path == "/login" and scope["method"] == "POST":
            await self._login(self.sessions, scope, receive, send)
        elif path == "/logout":
            await self._logout(self.sessions, scope, send)
        elif self.sessions.user_of(HTTPConnection(scope)) is not None or path in OPEN_PATHS:
            await self.app(scope, receive, send)
        elif path == "/" and scope["method"] in ("GET", "HEAD"):
            await respond(send, 200, LOGIN_PAGE.encode(), "text/html; charset=utf-8")
        else:
            await respond_json(send, 401, {"detail": "Not authenticated: log in first (POST /login)"})

    @staticmethod
    async def _login(sessions: Sessions, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            form = await _read_form(receive)
        except BodyTooLarge:
            await respond_json(send, 413, {"detail": f"a login form is at most {MAX_LOGIN_BODY} bytes"})
            return
        if not sessions.check(form.get("username", ""), form.get("password", "")):
            await respond_json(send, 401, {"detail": "Incorrect user name or password."})
            return
        cookie = f"{COOKIE}={sessions.open()}; Path=/; HttpOnly; SameSite=Lax"
        if scope.get("scheme") == "https":
            cookie += "; Secure"
        await respond_json(send, 200, {"success": True}, [(b"set-cookie", cookie.encode())])

    @staticmethod
    async def _logout(sessions: Sessions, scope: Scope, send: Send) -> None:
        sessions.close(HTTPConnection(scope).cookies.get(COOKIE))
        expired = f"{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"
        await respond(send, 303, b"", "text/plain", [(b"set-cookie", expired.encode()), (b"location", b"/")])


async def _read_form(receive: Receive) -> dict[str, str]:
    """The url-encoded form of a request body (first value of each field); BodyTooLarge over MAX_LOGIN_BODY."""
    body = await read_body(receive, MAX_LOGIN_BODY)
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}
