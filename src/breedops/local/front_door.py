"""The local services' front door: only this machine's clients, never a web page.

The emulator and local hosting listen on loopback without TLS, and what they serve is powerful:
`/moto-api/reset` wipes the state, and an endpoint's `code/inference.py` runs on this machine.
A web page in the user's browser can reach loopback too, so each request is refused (403) when

- it carries an `Origin` that is not the service's own (a cross-site `fetch`, a form post, a
  CORS preflight): browsers send `Origin` on every such request, AWS clients never do;
- its `Sec-Fetch-Site` says another site sent it (browsers send it even where `Origin` is
  missing, e.g. an `<img>` or a top-level navigation);
- its `Host` is not a loopback name or address (`127.0.0.0/8`, `[::1]`, `localhost`,
  `*.localhost`) or the address the service was told to bind: a DNS-rebinding page reaches
  127.0.0.1 under its own host name.

No `Access-Control-Allow-*` header is ever added, so a browser never lets a page read an answer.
`refusal()` is the one check; `FrontDoor` applies it to a WSGI app (the emulator), and local
hosting calls it from its request handler.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

log = logging.getLogger(__name__)

# A Host header: a bracketed IPv6 literal or a DNS name / IPv4 address, with an optional port.
_HOST_PATTERN = re.compile(r"^(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9._-]+))"
                           r"(?::(?P<port>[0-9]{1,5}))?$")
# What a browser says of a request that the page's own origin, or the user, made.
_OWN_FETCH_SITES = {"same-origin", "none"}
ERROR_CODE = "AccessDenied"

HeaderGetter = Callable[[str], "str | None"]
WsgiApp = Callable[[dict, Callable], Iterable[bytes]]


@dataclass(frozen=True)
class Refusal:
    """Why a request was refused, as an AWS-shaped error."""

    message: str
    status: int = 403
    code: str = ERROR_CODE


def _host_name(host: str) -> str | None:
    """The name or address in a Host header value (no port, no brackets), lower case."""
    match = _HOST_PATTERN.match(host.strip())
    if not match:
        return None
    return (match["ip6"] or match["name"]).lower().rstrip(".")


def is_local_host(host: str, bound_host: str | None = None) -> bool:
    """Whether a Host header (or URL host) names this machine's loopback or the bound address."""
    name = _host_name(host)
    if not name:
        return False
    if name == "localhost" or name.endswith(".localhost"):  # RFC 6761: always loopback
        return True
    try:
        if ipaddress.ip_address(name).is_loopback:
            return True
    except ValueError:
        pass
    return bool(bound_host) and name == bound_host.strip("[]").lower()


def _own_origin(origin: str, port: int, bound_host: str | None) -> bool:
    """Whether `origin` is the service itself: http, a local host name, the service's port."""
    try:
        parts = urlsplit(origin)
        origin_port = parts.port or 80
    except ValueError:
        return False
    return (parts.scheme == "http" and origin_port == port and not parts.path
            and is_local_host(parts.netloc, bound_host))


def refusal(header: HeaderGetter, port: int, bound_host: str | None = None) -> Refusal | None:
    """Why the request whose headers `header(name)` reads must be refused, or None to serve it.

    `port` and `bound_host` are the service's own port and bind address.
    """
    host = header("Host")
    if host is not None and not is_local_host(host, bound_host):
        return Refusal(
            f"Host {host!r} is not this machine's loopback: the local services answer only "
            "127.0.0.1, [::1], localhost or *.localhost (DNS-rebinding protection); point "
            f"the client at http://127.0.0.1:{port}")
    origin = header("Origin")
    if origin is not None and not _own_origin(origin, port, bound_host):
        return Refusal(
            f"cross-origin request from {origin!r} refused: the local services answer AWS "
            "clients on this machine, not web pages")
    fetch_site = header("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site.lower() not in _OWN_FETCH_SITES:
        return Refusal(
            f"request sent by another site (Sec-Fetch-Site: {fetch_site}) refused: the local "
            "services answer AWS clients on this machine, not web pages")
    return None


def _error_body(environ: dict, refused: Refusal) -> tuple[bytes, str]:
    """The error in the protocol the request speaks: JSON for JSON APIs, else AWS's XML."""
    wants_json = "HTTP_X_AMZ_TARGET" in environ or "json" in environ.get("CONTENT_TYPE", "")
    if wants_json:
        body = {"__type": f"{refused.code}Exception", "message": refused.message}
        return json.dumps(body).encode(), "application/x-amz-json-1.1"
    xml = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse><Error><Type>Sender"
           f"</Type><Code>{refused.code}</Code><Message>{escape(refused.message)}</Message>"
           f"</Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>")
    return xml.encode(), "application/xml"


class FrontDoor:
    """WSGI middleware that refuses, before anything else runs, what `refusal()` refuses."""

    def __init__(self, app: WsgiApp, port: int, bound_host: str | None = None) -> None:
        self.app, self.port, self.bound_host = app, port, bound_host

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        refused = refusal(
            lambda name: environ.get("HTTP_" + name.upper().replace("-", "_")),
            self.port, self.bound_host)
        if refused is None:
            return self.app(environ, start_response)
        log.warning("refused %s %s from %s: %s", environ.get("REQUEST_METHOD"),
                    environ.get("PATH_INFO"), environ.get("REMOTE_ADDR"), refused.message)
        body, content_type = _error_body(environ, refused)
        start_response(f"{refused.status} {HTTPStatus(refused.status).phrase}", [
            ("Content-Type", content_type), ("Content-Length", str(len(body))),
            ("x-amzn-ErrorType", refused.code), ("Connection", "close")])
        return [body]
