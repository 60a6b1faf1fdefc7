"""The teacher's live page over HTTP: the page itself, its state as Server-Sent Events, and the state as JSON.

`GET /` is one self-contained HTML page (no external assets: a classroom may have no internet); it opens
`GET /events`, a Server-Sent Events stream with one `data:` line of JSON per state, and redraws without reloading.
`GET /state` is the newest state. It binds 127.0.0.1 by default; on any other address it refuses to start without API
keys (`classemo.apikeys`, the keys Serve uses), and then every request needs one, as `Authorization: Bearer <key>` or,
for a browser that opens the page by its link, `?key=<key>` (the page passes it on to /events).
"""

from __future__ import annotations

import ipaddress
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from urllib.parse import parse_qs, urlsplit

from classemo.apikeys import KEYS_ENV, auth_problem

HEARTBEAT_S = 15.0  # an SSE comment this often keeps proxies from closing an idle stream


def live_page_html(title: str) -> str:
    """The live page, titled; it reads its states from `events` beside its own URL (`classemo live`'s /events, or
    Serve's /v1/streams/<id>/events)."""
    from html import escape

    return files("classemo.live").joinpath("page.html").read_text().replace("{{title}}", escape(title))


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LivePage:
    """Serve the live page on `host:port` (port 0: any free port) from a background thread.

    Args:
        host: address to bind; anything but loopback needs `key_digests`.
        port: TCP port.
        key_digests: `classemo.apikeys.load_key_digests()`; empty: no key asked (loopback only).
        title: the page's heading (the classroom's name).

    Raises:
        ValueError: a non-loopback address without API keys.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, key_digests: tuple[bytes, ...] = (),
                 title: str = "classemo live") -> None:
        if not is_loopback(host) and not key_digests:
            raise ValueError(f"the live page binds {host}, reachable from other machines: set API keys first "
                             f"({KEYS_ENV}=key1,key2), as for Serve; on 127.0.0.1 none are needed")
        self.digests, self.title = key_digests, title
        self._state: dict | None = None
        self._version = 0
        self._cond = threading.Condition()
        self._closed = False
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="live page", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def publish(self, state: dict) -> None:
        """Make `state` the page's newest (every open event stream gets it)."""
        with self._cond:
            self._state, self._version = state, self._version + 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _next_state(self, seen: int) -> tuple[int, dict | None]:
        """Wait (up to a heartbeat) for a state newer than version `seen`; (seen, None) on a heartbeat or close."""
        with self._cond:
            self._cond.wait_for(lambda: self._version > seen or self._closed, timeout=HEARTBEAT_S)
            return (self._version, self._state) if self._version > seen else (seen, None)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        page = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                key = parse_qs(url.query).get("key", [""])[0]
                header = self.headers.get("Authorization") or (f"Bearer {key}" if key else None)
                problem = auth_problem(header, page.digests)
                if problem is not None:
                    self._send(401, "application/json", json.dumps({"detail": problem[0]}).encode(),
                               {"WWW-Authenticate": problem[1]})
                elif url.path == "/":
                    self._send(200, "text/html; charset=utf-8", live_page_html(page.title).encode())
                elif url.path == "/state":
                    self._send(200, "application/json", json.dumps(page._state, default=float).encode())
                elif url.path == "/events":
                    self._events()
                else:
                    self._send(404, "application/json", b'{"detail": "not found"}')

            def _send(self, code: int, kind: str, body: bytes, headers: dict | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _events(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                seen = 0
                try:
                    while not page._closed:
                        seen, state = page._next_state(seen)
                        line = b": heartbeat\n\n" if state is None else \
                            b"data: " + json.dumps(state, default=float).encode() + b"\n\n"
                        self.wfile.write(line)
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the browser went away

            def log_message(self, *args: object) -> None:
                pass

        return Handler
