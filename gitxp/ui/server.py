"""The HTTP side of ``gitxp ui``: routing, the token, headers, static files.

The standard library's threaded server is enough for one person's browser.
Everything served is either one of the package's own ``static/`` files
(looked up by exact name in a list made at start, never by joining a path
from the request) or JSON from :class:`gitxp.ui.api.Api`. Requests are
GET/HEAD only; a path with ``..`` segments, encoded slashes or backslashes
is refused before routing. Off loopback, a random token is required (in the
query once, then a cookie); on loopback the ``Host`` header must name a
loopback address, so a web page elsewhere cannot reach the UI through DNS
rebinding.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qs, unquote, urlsplit

from gitxp.errors import GitxpError
from gitxp.ui.api import DEFAULT_MAX_POINTS, Api, ApiError, parse_int, to_json

STATIC_DIR = Path(__file__).resolve().parent / "static"
COOKIE = "gitxp_ui_token"
#: No inline script or style, nothing from elsewhere: the page's own files and its API only.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
_BAD_PATH = re.compile(r"%2f|%5c|%00|%2e|\\", re.IGNORECASE)
_ROUTE = re.compile(r"^/api/experiments/([^/]+)(?:/(metrics|hardware))?$")
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def static_files() -> dict[str, Path]:
    """URL path → file, for the package's own static files only (``/`` is the page)."""
    files = {f"/{p.name}": p for p in STATIC_DIR.iterdir() if p.is_file() and p.suffix in _TYPES}
    files["/"] = STATIC_DIR / "index.html"
    return files


class UIServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: Api, *, token: str | None) -> None:
        if ":" in address[0]:
            import socket

            self.address_family = socket.AF_INET6
        self.api = api
        self.token = token
        self.static = static_files()
        self.bind_host = address[0]
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        host, port = self.bind_host, self.server_address[1]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/" + (f"?token={self.token}" if self.token else "")


class Handler(BaseHTTPRequestHandler):
    server: UIServer
    protocol_version = "HTTP/1.1"

    def version_string(self) -> str:
        return "gitxp-ui"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # the one line on stdout is the URL; access logs would drown it

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):
            return self._not_allowed  # POST, PUT, DELETE, OPTIONS, anything invented: 405
        raise AttributeError(name)

    def _not_allowed(self) -> None:
        self._send_json(405, {"error": f"method {self.command} is not allowed; the UI is read-only (GET/HEAD)"}, extra={"Allow": "GET, HEAD"})

    def do_HEAD(self) -> None:
        self._handle(head=True)

    def do_GET(self) -> None:
        self._handle(head=False)

    # ------------------------------------------------------------ plumbing

    def _send(self, status: int, body: bytes, ctype: str, *, head: bool = False, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_json(self, status: int, obj: Any, *, head: bool = False, extra: dict[str, str] | None = None) -> None:
        self._send(status, to_json(obj), "application/json", head=head, extra=extra)

    def _token_ok(self, query: dict[str, list[str]]) -> tuple[bool, bool]:
        """(allowed, set the cookie now)."""
        token = self.server.token
        if token is None:
            return True, False
        given = (query.get("token") or [""])[0]
        if given and hmac.compare_digest(given.encode(), token.encode()):
            return True, True
        for part in (self.headers.get("Cookie") or "").split(";"):
            k, _, v = part.strip().partition("=")
            if k == COOKIE and hmac.compare_digest(v.encode(), token.encode()):
                return True, False
        return False, False

    def _host_ok(self) -> bool:
        if self.server.token is not None:
            return True  # the token is the guard off loopback
        host = (self.headers.get("Host") or "").strip()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return is_loopback(name)

    # ------------------------------------------------------------ routing

    def _handle(self, *, head: bool) -> None:
        try:
            self._route(head)
        except ApiError as exc:
            self._send_json(exc.status, {"error": str(exc)}, head=head)
        except GitxpError as exc:
            self._send_json(500 if exc.exit_code == 1 else 400, {"error": str(exc)}, head=head)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # a bug: keep serving, say what broke
            print(f"gitxp ui: {type(exc).__name__}: {exc}", file=sys.stderr)
            self._send_json(500, {"error": f"internal error: {type(exc).__name__}: {exc}"}, head=head)

    def _route(self, head: bool) -> None:
        raw = self.path
        if not raw.startswith("/"):
            raise ApiError(400, "bad request target")
        parts = urlsplit(raw)
        path = parts.path
        if _BAD_PATH.search(path) or any(seg in (".", "..") for seg in unquote(path).split("/")) or "//" in path:
            raise ApiError(400, f"refused path {path[:80]!r}", "nothing outside the UI's own files is served")
        query = parse_qs(parts.query, keep_blank_values=True)
        if not self._host_ok():
            raise ApiError(403, "this UI answers only to a loopback Host header", "open the URL gitxp ui printed")
        allowed, set_cookie = self._token_ok(query)
        if not allowed:
            raise ApiError(403, "a token is required", "open the URL `gitxp ui` printed (it ends in ?token=…)")
        extra = {"Set-Cookie": f"{COOKIE}={self.server.token}; Path=/; HttpOnly; SameSite=Strict"} if set_cookie else None
        if path.startswith("/api/"):
            answer = self._api(path, query)
            if isinstance(answer, bytes):
                self._send(200, answer, "application/json", head=head, extra=extra)
            else:
                self._send_json(200, answer, head=head, extra=extra)
            return
        f = self.server.static.get(path)
        if f is None:
            raise ApiError(404, f"no such page {path[:80]!r}")
        self._send(200, f.read_bytes(), _TYPES[f.suffix], head=head, extra=extra)

    def _api(self, path: str, query: dict[str, list[str]]) -> Any:
        api = self.server.api

        def one(name: str) -> str | None:
            values = query.get(name)
            return values[-1] if values else None

        if path == "/api/experiments":
            return api.experiments_json(where=one("where"), limit=parse_int(one("limit"), "limit", default=None), offset=parse_int(one("offset"), "offset", default=0) or 0)
        m = _ROUTE.match(path)
        if m is None:
            raise ApiError(404, f"no such API path {path[:80]!r}", "the API is /api/experiments[/REF[/metrics|/hardware]]")
        ref, what = unquote(m.group(1)), m.group(2)
        max_points = parse_int(one("max_points"), "max_points", default=DEFAULT_MAX_POINTS, minimum=1) or DEFAULT_MAX_POINTS
        if what is None:
            return api.experiment(ref)
        if what == "metrics":
            return api.metrics(ref, name=one("name"), max_points=max_points)
        return api.hardware(ref, max_points=max_points)


class _Stop(BaseException):
    pass


def make_server(repo: str, *, host: str = "127.0.0.1", port: int = 8765) -> UIServer:
    """Bind (``port`` 0: a free one) over the store at ``repo``; a token unless ``host`` is loopback."""
    from gitxp.store.store import Store

    store = Store.open(repo)
    token = None if is_loopback(host) else secrets.token_urlsafe(24)
    try:
        return UIServer((host, port), Api(store), token=token)
    except OSError as exc:
        store.close()
        hint = "choose another with --port, or --port 0 for a free one" if port else "check --host"
        raise GitxpError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", hint) from exc


def serve(repo: str, *, host: str = "127.0.0.1", port: int = 8765, open_browser: bool = True, out: TextIO | None = None) -> None:
    """Serve until SIGINT or SIGTERM; print exactly one line, the URL, once accepting."""
    server = make_server(repo, host=host, port=port)
    out = out or sys.stdout

    def stop(signum: int, frame: Any) -> None:
        raise _Stop

    old = signal.signal(signal.SIGTERM, stop)
    warm = threading.Thread(target=server.api.warm, name="gitxp-ui-warm", daemon=True)
    try:
        print(f"gitxp ui: {server.url}", file=out, flush=True)
        warm.start()
        if open_browser:
            import webbrowser

            threading.Thread(target=webbrowser.open, args=(server.url,), daemon=True).start()
        server.serve_forever(poll_interval=0.2)
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        signal.signal(signal.SIGTERM, old)
        server.server_close()
        # Python must not exit under the warm-up: stopped within its first second, the server
        # crashed (SIGSEGV, 1 run in 20-40) when the interpreter shut down while that thread was
        # still importing numpy and pyarrow's C extensions, and the store it reads must stay open
        if warm.ident is not None:
            warm.join(timeout=60)
        if not warm.is_alive():
            server.api.store.close()
