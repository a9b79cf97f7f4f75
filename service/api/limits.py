"""Body-size limit and per-route Prometheus metrics, as plain ASGI middleware (Starlette's
BaseHTTPMiddleware costs a task and a stream per request, a third of a cheap request)."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import TITLES, BodyTooLarge, problem


def declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


def limited(receive: Receive, limit: int) -> Receive:
    """``receive`` that counts body bytes as they arrive (chunked bodies included) and raises
    BodyTooLarge as soon as more than ``limit`` came. Routes read their body only after
    authentication, so an unauthenticated body is never read at all."""
    received = 0

    async def receive_limited() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit)
        return message

    return receive_limited


class LimitsAndMetrics:
    def __init__(
        self, app: ASGIApp, *, max_body: int, latency: Histogram, requests_total: Counter
    ) -> None:
        self.app, self.max_body = app, max_body
        self.latency, self.requests_total = latency, requests_total

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = declared_length(scope)
        if length is not None and length > self.max_body:  # refused before reading a byte
            await self._too_large(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, limited(receive, self.max_body), send_status)
        except BodyTooLarge:  # read outside a route (its handlers answer it inside)
            if status is not None:
                raise
            status = 413
            await self._too_large(scope, receive, send)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            self.latency.labels(path).observe(time.perf_counter() - started)
            self.requests_total.labels(scope["method"], path, str(status or 500)).inc()

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = BodyTooLarge(self.max_body).detail
        await problem(413, TITLES[413], detail, {"Connection": "close"})(scope, receive, send)
