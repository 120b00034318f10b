"""A master's live dashboard: an HTML page at / and the JSON it polls at /status.json.

Both are served beside /metrics, on the address given to ``--metrics``. The
page (dashboard.html, in this package) is static and self-contained: its
script fetches the JSON every few seconds and writes what it shows with
``textContent`` only, since worker names, programs and failure reasons come
from the network. What the JSON holds: dashboard_view.py.

A master told of other masters' dashboards (``--peer-dashboard URL``) lists
them in its JSON; its page fetches theirs too and shows the cluster on one
page. Its Content-Security-Policy lets the page reach those origins and no
other, and its JSON may be read by a page from those origins (CORS): give
every master the others' dashboards.
"""

import base64
import hashlib
import json
import re
from importlib import resources

from sieci.master.dashboard_view import MasterView
from sieci.master.peers import origin_of

PAGE_PATH = "/"
JSON_PATH = "/status.json"

PAGE = resources.files(__package__).joinpath("dashboard.html").read_bytes()


def _inline_hash(tag):
    """The CSP source that allows the page's one inline <tag> and nothing injected beside it."""
    content = re.search(rb"<%s>(.*?)</%s>" % (tag, tag), PAGE, re.S)[1]
    return "'sha256-" + base64.b64encode(hashlib.sha256(content).digest()).decode() + "'"


def page_headers(peer_origins):
    """The page's headers: only its own script and style run, and it fetches only from its master and
    ``peer_origins``."""
    connect = " ".join(["'self'", *peer_origins])
    return [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Security-Policy", f"default-src 'none'; script-src {_inline_hash(b'script')}; "
                                    f"style-src {_inline_hash(b'style')}; connect-src {connect}; "
                                    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
        ("X-Content-Type-Options", "nosniff"),
    ]


JSON_HEADERS = [
    ("Content-Type", "application/json"),
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
]


class Dashboard:
    """The WSGI app of ``master``'s page and JSON, with ``peers`` (other masters' dashboards' URLs, as
    options.dashboard_url gives them); other paths go to ``fallback``."""

    def __init__(self, master, fallback, peers=()):
        self.view = MasterView(master, peers)
        self.fallback = fallback
        self.peer_origins = self.origins(peers)
        self.page_headers = page_headers(self.peer_origins)

    @staticmethod
    def origins(peers):
        """The origins of ``peers``' URLs, each once, in order."""
        return sorted({origin_of(url) for url in peers})

    def state(self, now=None):
        return self.view.state(now)

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO") or PAGE_PATH
        if path == PAGE_PATH:
            start_response("200 OK", self.page_headers)
            return [PAGE]
        if path == JSON_PATH:
            start_response("200 OK", self._json_headers(environ.get("HTTP_ORIGIN")))
            return [json.dumps(self.state(), separators=(",", ":")).encode()]
        return self.fallback(environ, start_response)

    def _json_headers(self, origin):
        """A peer's page may read the JSON (CORS), no other page."""
        if origin in self.peer_origins:
            return [*JSON_HEADERS, ("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
        return [*JSON_HEADERS, ("Vary", "Origin")]
