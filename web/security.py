"""Security headers (CSP, framing) and the cross-site guard for state-changing requests."""

from __future__ import annotations

from litestar.datastructures import MutableScopeHeaders
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from jobs.settings import Settings

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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


def cross_site_refusal(method: str, headers: dict[str, str], scheme: str,
                       settings: Settings) -> str | None:
    """Why a state-changing request must be refused, or None to let it through."""
    if method in SAFE_METHODS:
        return None
    site = headers.get("sec-fetch-site")
    origin = headers.get("origin")
    host = headers.get("host", "")
    own = f"{scheme}://{host}"
    trusted = allowed_origins(settings)
    if site in ("same-origin", "none"):
        return None
    if site is None and origin is None:
        return None  # curl, scripts, other tools
    if origin and (origin == own or origin.rstrip("/") in trusted):
        return None
    return (f"Cross-site request refused: origin {origin or 'unknown'} "
            f"(Sec-Fetch-Site: {site or 'absent'}) may not change jobs here.")


def security_middleware(settings: Settings):  # type: ignore[no-untyped-def]
    csp = content_security_policy(settings)

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                       for k, v in scope.get("headers", [])}
            refusal = cross_site_refusal(scope["method"], headers, scope.get("scheme", "http"),
                                         settings)
            if refusal:
                body = ('{"status_code":403,"detail":' + _json(refusal) + "}").encode()
                await send({"type": "http.response.start", "status": 403, "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"content-security-policy", csp.encode())]})
                await send({"type": "http.response.body", "body": body})
                return

            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    h = MutableScopeHeaders.from_message(message)
                    h["Content-Security-Policy"] = csp
                    h["X-Content-Type-Options"] = "nosniff"
                    h["Referrer-Policy"] = "same-origin"
                await send(message)

            await app(scope, receive, send_with_headers)

        return middleware

    return factory


def _json(text: str) -> str:
    import json

    return json.dumps(text)
