"""What stands between the reader-study app and a hostile client: body limits and strict JSON
(``BodyLimit``), one host only (``PinnedHost``), the Bearer scheme (``bearer_token``), validation
errors that echo nothing (``invalid_fields``) and the security headers of every response.

Hostile requests get short refusals that echo nothing: bodies are capped at ``MAX_BODY`` bytes
and ``BODY_SECONDS`` before anything parses them (413, 408), JSON with duplicate keys or non-finite
numbers is refused (422), validation errors name the field, never the value.
"""

from __future__ import annotations

import asyncio
import json
import math
from urllib.parse import urlsplit

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 64 * 1024  # bytes; the largest legitimate body (a trial's scores) is under 2 KB
BODY_SECONDS = 10.0  # a body must arrive within this (408 beyond): a slow upload cannot hold the server
CONTENT_SECURITY_POLICY = "default-src 'self'; img-src 'self'; frame-ancestors 'none'"


class BodyLimit:
    """ASGI middleware: read at most ``limit`` bytes of a request body, within ``seconds``, before the
    app sees it (413 beyond, whatever Content-Length says; 408 when too slow), and refuse JSON with duplicate keys or non-finite numbers
    (422). Nothing of the body is echoed."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY, seconds: float = BODY_SECONDS) -> None:
        self.app, self.limit, self.seconds = app, limit, seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.limit:
            return await _refuse(send, 413, "request body too large")
        body = b""
        deadline = asyncio.get_running_loop().time() + self.seconds
        while True:
            try:
                message = await asyncio.wait_for(
                    receive(), max(0.0, deadline - asyncio.get_running_loop().time())
                )
            except asyncio.TimeoutError:
                return await _refuse(send, 408, "request body too slow")
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.limit:
                return await _refuse(send, 413, "request body too large")
            if not message.get("more_body"):
                break
        if body and not _strict_json(body):
            return await _refuse(send, 422, "invalid JSON (malformed, duplicate keys or non-finite numbers)")
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _strict_json(body: bytes) -> bool:
    """Whether ``body`` is JSON without duplicate keys, NaN, Infinity or numbers that overflow."""

    def pairs(items: list[tuple[str, object]]) -> dict:
        keys = [key for key, _ in items]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate key")
        return dict(items)

    def number(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError("non-finite number")
        return value

    def constant(_: str) -> None:
        raise ValueError("non-finite number")

    try:
        json.loads(body, object_pairs_hook=pairs, parse_float=number, parse_constant=constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return True


async def _refuse(send: Send, status: int, detail: str) -> None:
    payload = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


#: The request fields a validation error may name; anything else (dict keys, unknown fields) is not echoed.
KNOWN_FIELDS = frozenset(
    {
        "alias",
        "scores",
        "viewport",
        "trial_seconds",
        "width",
        "height",
        "device_pixel_ratio",
        "position",
        "token",
    }
)


def invalid_fields(exc: RequestValidationError) -> list[str]:
    """The known field names a validation error is about (never a value, a dict key or an unknown name)."""
    named = {str(part) for error in exc.errors() for part in error.get("loc", ())}
    return sorted(named & KNOWN_FIELDS) or ["body"]


class PinnedHost:
    """ASGI middleware: answer only requests whose Host is ``host`` or loopback (IPv4, IPv6, localhost),
    with 400 otherwise; never a redirect (Starlette's TrustedHostMiddleware redirects to ``www.``)."""

    LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

    def __init__(self, app: ASGIApp, host: str) -> None:
        self.app, self.allowed = app, {host.lower()} | self.LOOPBACK

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            raw = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            try:
                host = (urlsplit(f"//{raw}").hostname or "").lower()
            except ValueError:
                host = ""
            if host not in self.allowed:
                return await _refuse(send, 400, "invalid host")
        await self.app(scope, receive, send)


def bearer_token(authorization: str | None) -> str | None:
    """The credentials of an ``Authorization: Bearer <token>`` header (scheme in any case), else None."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None


async def security_headers(request: Request, call_next) -> Response:
    """HTTP middleware: no sniffing, no referrer (rater links carry their token), no framing, a strict
    CSP, and no caching of API answers."""
    response: Response = await call_next(request)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    if request.url.path.startswith("/api/"):
        response.headers["Cache-Control"] = "no-store"
    return response
