"""The guard in front of every request: the Host allow-list (DNS rebinding), the cross-site guard
for state-changing requests, and the security headers (CSP, nosniff, framing) on every answer,
404s and 405s included.

It wraps the whole application (``Litestar.asgi_handler``), not only its routes: a route's
middleware never sees a request no route matches, and those answers need the headers too.
"""

from __future__ import annotations

import json
import socket

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from jobs.settings import Settings

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("0.0.0.0", "::", "")


def content_security_policy(settings: Settings) -> str:
    ancestors = " ".join(settings.embed_origin_list) or "'self'"
    return "; ".join([
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        f"frame-ancestors {ancestors}",
    ])


def allowed_origins(settings: Settings) -> set[str]:
    return {o.rstrip("/") for o in settings.embed_origin_list if not o.startswith("'")}


def allowed_hosts(settings: Settings, bind_host: str | None = None) -> frozenset[str] | None:
    """The host names this service answers to (None: any, ``MARKETDESK_ALLOWED_HOSTS=*``).
    By default the loopback names and the address it is bound to (and the machine's name when
    it is bound to every interface)."""
    configured = [h.strip().lower() for h in settings.allowed_hosts.replace(",", " ").split()]
    if "*" in configured:
        return None
    hosts = set(configured) if configured else set(LOOPBACK_NAMES)
    if not configured and bind_host is not None:
        if bind_host in WILDCARD_BINDS:
            hosts.update({socket.gethostname().lower(), socket.getfqdn().lower()})
        else:
            hosts.add(bind_host.strip("[]").lower())
    return frozenset(hosts)


def host_name(host_header: str) -> str:
    """The name of a Host header without its port: ``[::1]:8000`` -> ``::1``."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def host_refusal(headers: dict[str, str], hosts: frozenset[str] | None) -> str | None:
    if hosts is None:
        return None
    host = headers.get("host")
    if host is None:
        return "Host header required"
    if host_name(host) in hosts:
        return None
    shown = host if len(host) <= 100 else host[:100] + "…"
    return (f"Host {shown!r} is not served here; allowed: {', '.join(sorted(hosts))} "
            "(MARKETDESK_ALLOWED_HOSTS)")


def cross_site_refusal(method: str, headers: dict[str, str], scheme: str,
                       settings: Settings) -> str | None:
    """Why a state-changing request must be refused, or None to let it through. A foreign
    Origin is refused whatever Sec-Fetch-Site claims (a header a page cannot set, but a
    rebinding attack or an odd client can leave inconsistent)."""
    if method in SAFE_METHODS:
        return None
    site = headers.get("sec-fetch-site")
    origin = headers.get("origin")
    if origin is not None:
        own = f"{scheme}://{headers.get('host', '')}"
        if origin == own or origin.rstrip("/") in allowed_origins(settings):
            return None
        # behind a TLS-terminating proxy the scheme differs, the host does not
        if site == "same-origin" and origin.partition("://")[2] == headers.get("host"):
            return None
    elif site in (None, "same-origin", "none"):
        return None  # curl, scripts, other tools; or the browser says it is ours
    shown = origin if origin is None or len(origin) <= 100 else origin[:100] + "…"
    return (f"Cross-site request refused: origin {shown or 'unknown'} "
            f"(Sec-Fetch-Site: {site or 'absent'}) may not change jobs here.")


async def refuse(send: Send, status: int, detail: str, extra: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"status_code": status, "detail": detail}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()), *extra]})
    await send({"type": "http.response.body", "body": body})


def security_middleware(settings: Settings, bind_host: str | None = None):  # type: ignore[no-untyped-def]
    csp = content_security_policy(settings)
    hosts = allowed_hosts(settings, bind_host)
    fixed = [(b"content-security-policy", csp.encode()), (b"x-content-type-options", b"nosniff"),
             (b"referrer-policy", b"same-origin")]

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                       for k, v in scope.get("headers", [])}
            refusal = host_refusal(headers, hosts)
            status = 400
            if refusal is None:
                refusal = cross_site_refusal(scope["method"], headers, scope.get("scheme", "http"),
                                             settings)
                status = 403
            if refusal:
                await refuse(send, status, refusal, fixed)
                return

            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":  # no handler sets these itself
                    message = {**message, "headers": [*message.get("headers", ()), *fixed]}
                await send(message)

            await app(scope, receive, send_with_headers)

        return middleware

    return factory
