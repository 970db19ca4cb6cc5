"""A one-answer HTTP/1.1 upstream, for provider shapes the mock providers do not send
(headers of a test's choosing, no body at all): every POST gets the same status, headers
and body. 127.0.0.1, a port picked at run time."""

from __future__ import annotations

import http.server
import socketserver
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from . import config as envoy_config


@contextmanager
def fixed_upstream(status: int, headers: Sequence[tuple[str, str]] = (), body: bytes = b"") -> Iterator[int]:
    """Serves every POST with `status`, `headers` and `body` (its content-length added); yields the port."""

    class Upstream(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Upstream)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def point_clusters(gateway, clusters: Sequence[str], port: int) -> None:
    """Restarts the gateway's Envoy with `clusters` sent to 127.0.0.1:`port`."""
    gateway.envoy.stop()
    for cluster in clusters:
        envoy_config.point_cluster(gateway.envoy.config, cluster, port)
    gateway.envoy.start()
