"""A local HTTP server that replays recorded vendor responses.

Vendor adapters are real HTTP code; the tests point their base URL at this
server. Routes come from ``tests/fixtures/vendors/<vendor>/routes.json``::

    [{"path": "/v2/aggs/ticker/AAPL/range/1/day/2014-01-01/2014-12-31",
      "query": {"adjusted": "false"},          # optional: must match exactly (key param ignored)
      "file": "aggs_AAPL_2014.json",           # body, relative to the routes file
      "status": 200, "content_type": "application/json"}]

or are added in a test with :meth:`ReplayServer.add` (a list of responses is
served in order, the last one repeating: e.g. 429, 429, 200). A route may
name its ``method`` ("GET", "POST"); without one it answers any method.
Requests without the expected API key get 401, as the vendors do: the key is
looked for in the query (``key_params``) or, with ``key_header``, in a header
(Alpaca's ``APCA-API-KEY-ID``; ``required_headers`` must match too, e.g. the
secret). Every request is logged in :attr:`ReplayServer.requests` as
``(path, query)`` and in :attr:`ReplayServer.calls` with its method, headers
and body.
"""

from __future__ import annotations

import contextlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

FIXTURES = Path(__file__).parent / "fixtures" / "vendors"


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class _Route:
    path: str
    query: dict | None
    replies: list[Reply]
    served: int = 0
    method: str | None = None
    handler: object = None       # callable(path, query) -> Reply, for paths starting with ``path``


@dataclass(frozen=True)
class Call:
    """One request as the server received it (the key header/param included)."""

    method: str
    path: str
    query: dict
    headers: dict   # lower-cased names
    body: bytes

    def json(self):
        return json.loads(self.body)


class ReplayServer:
    def __init__(self, api_key: str | None = None, key_params: tuple[str, ...] = ("apiKey", "api_key"),
                 key_header: str | None = None, required_headers: dict | None = None):
        self.api_key = api_key
        self.key_params = key_params
        self.key_header = key_header.lower() if key_header else None
        self.required_headers = {k.lower(): v for k, v in (required_headers or {}).items()}
        self.routes: list[_Route] = []
        self.requests: list[tuple[str, dict]] = []
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.do_GET()

            def do_GET(self):  # noqa: N802
                parts = urlsplit(self.path)
                query = dict(parse_qsl(parts.query, keep_blank_values=True))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                reply = server._match(parts.path, query, headers, self.command, body)
                if reply.delay:
                    import time

                    time.sleep(reply.delay)
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(reply.body)

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ReplayServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self, requests: list | None = None) -> None:
        """Forget every route and start a new request log (``requests``: a list to log into)."""
        with self._lock:
            self.routes.clear()
            self.requests = requests if requests is not None else []
            self.calls = []

    def add(self, path: str, replies: Reply | list[Reply], query: dict | None = None, method: str | None = None) -> None:
        replies = replies if isinstance(replies, list) else [replies]
        with self._lock:
            self.routes.insert(0, _Route(path, query, replies, method=method.upper() if method else None))  # later routes win

    def add_handler(self, prefix: str, handler) -> None:
        """Answer every path starting with ``prefix`` with ``handler(path, query) -> Reply``."""
        with self._lock:
            self.routes.insert(0, _Route(prefix, None, [], handler=handler))

    def add_fixtures(self, vendor: str, root: Path = FIXTURES) -> None:
        folder = root / vendor
        for spec in json.loads((folder / "routes.json").read_text()):
            body = (folder / spec["file"]).read_bytes() if spec.get("file") else spec.get("body", "").encode()
            self.add(
                spec["path"],
                Reply(spec.get("status", 200), body, spec.get("content_type", "application/json"), spec.get("headers", {})),
                spec.get("query"),
                spec.get("method"),
            )

    def _match(self, path: str, query: dict, headers: dict, method: str = "GET", body: bytes = b"") -> Reply:
        if self.key_header:
            key = headers.get(self.key_header)
            clean = dict(query)
        else:
            key = next((query.get(k) for k in self.key_params if k in query), None)
            clean = {k: v for k, v in query.items() if k not in self.key_params}
        with self._lock:
            self.requests.append((path, clean))
            self.calls.append(Call(method, path, clean, headers, body))
            if self.key_header and ((self.api_key is not None and key != self.api_key) or any(headers.get(k) != v for k, v in self.required_headers.items())):
                return Reply(401, json.dumps({"code": 40110000, "message": "request is not authorized"}).encode())
            if self.api_key is not None and key != self.api_key:
                return Reply(401, json.dumps({"status": "ERROR", "error": "Unknown API Key"}).encode())
            for route in self.routes:
                if route.handler is not None:
                    if path.startswith(route.path):
                        return route.handler(path, clean)
                    continue
                if route.path == path and (route.query is None or route.query == clean) and route.method in (None, method):
                    reply = route.replies[min(route.served, len(route.replies) - 1)]
                    route.served += 1
                    return reply
        return Reply(404, json.dumps({"status": "NOT_FOUND", "message": f"no recorded response for {path} {clean}"}).encode())
