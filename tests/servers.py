"""Local stand-in HTTP servers on 127.0.0.1 speaking the real protocols (PyPI JSON API, NBIA v1)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

# handler(path, query, hits) -> (status, headers, body) or a callable that writes the response itself
Route = Callable[[str, dict[str, list[str]], Counter], object]


@contextmanager
def serve(route: Route):
    """Run a threaded HTTP server on a free loopback port; yields (base_url, hits counter)."""
    hits: Counter = Counter()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output quiet
            pass

        def do_GET(self):
            parsed = urlparse(self.path)
            query = parse_qs(parsed.query)
            hits[(parsed.path, tuple(sorted((k, tuple(v)) for k, v in query.items())))] += 1
            answer = route(parsed.path, query, hits)
            if callable(answer):
                answer(self)
                return
            status, headers, body = answer
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def closed_port_url() -> str:
    """A loopback URL on which nothing listens."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
