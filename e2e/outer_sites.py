"""Tiny stdlib web servers playing other sites: one allowed to embed marketdesk, one not.

Both listen on 127.0.0.1 and are addressed as ``http://localhost:<port>``, while the stack is
addressed as ``http://127.0.0.1:<port>``: different hosts, so a different origin *and* a
different site (Sec-Fetch-Site: cross-site) from the stack's pages.

``GET /frame?src=<url>[&src=<url>...]`` answers a page with one iframe per ``src``;
``GET /post?action=<url>&field=value...`` a page with a form that POSTs those fields there.
"""

from __future__ import annotations

import html
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/frame":
            frames = "\n".join(
                f'<iframe name="f{i}" data-testid="frame-{i}" src="{html.escape(src)}" '
                f'width="900" height="500"></iframe>'
                for i, src in enumerate(query.get("src", [])))
            body = f"<!doctype html><title>outer</title><h1>Outer site</h1>\n{frames}\n"
        elif url.path == "/post":
            action = query.pop("action", [""])[0]
            fields = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v[0])}">'
                             for k, v in query.items())
            body = (f'<!doctype html><title>poster</title><form method="post" '
                    f'action="{html.escape(action)}">{fields}<button id="go">Send</button></form>')
        elif url.path == "/":
            body = "<!doctype html><title>outer</title><p>outer site</p>"
        else:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


class OuterSite:
    """One such server on a free port of 127.0.0.1, run in a daemon thread."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://localhost:{self.port}"

    def start(self) -> OuterSite:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
