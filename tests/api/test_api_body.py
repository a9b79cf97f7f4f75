"""Request bodies: authentication comes before any byte of the body is read, and the body
limit holds while a body streams in (chunked bodies have no Content-Length)."""

from __future__ import annotations

import asyncio

from pcd_testing.app import app_without_drivers

from .conftest import RW, asgi_client
from .test_api_basics import SMALL, _problem

CHUNK = b"x" * 65536


class ChunkedBody:
    """A chunked request body of ``chunks`` chunks that records how many were read."""

    def __init__(self, chunks: int, head: bytes = b"") -> None:
        self.chunks, self.head, self.read = chunks, head, 0

    async def __aiter__(self):
        if self.head:
            yield self.head
        for _ in range(self.chunks):
            self.read += 1
            yield CHUNK


def _post(app_settings, body: ChunkedBody, headers: dict[str, str]):
    async def go():
        async with asgi_client(app_without_drivers(app_settings)) as client:
            return await client.post(
                "/v1/studies", content=body, headers={"content-type": "application/json", **headers}
            )

    return asyncio.run(go())


def test_an_unauthenticated_chunked_body_is_refused_unread(app_settings) -> None:
    body = ChunkedBody(1600)  # 100 MiB
    response = _post(app_settings, body, {})
    _problem(response, 401, "Bearer")
    assert body.read == 0


def test_an_oversized_chunked_body_is_refused_as_soon_as_it_passes_the_limit(
    app_settings,
) -> None:
    body = ChunkedBody(1600)
    response = _post(app_settings, body, RW)
    _problem(response, 413, "limited to 262144 bytes")
    assert body.read == 262144 // len(CHUNK) + 1  # not one chunk more


def test_a_chunked_body_within_the_limit_is_read(app_settings) -> None:
    import json

    body = ChunkedBody(0, head=json.dumps(SMALL).encode())
    response = _post(app_settings, body, RW)
    assert response.status_code == 201, response.text


def test_malformed_json_without_a_token_is_401(inproc) -> None:
    headers = {"content-type": "application/json"}
    _problem(inproc.post("/v1/studies", content=b"{not json", headers=headers), 401, "Bearer")
    _problem(
        inproc.post("/v1/studies", content=b"{not json", headers={**headers, **RW}),
        422,
        "body: not valid JSON",
    )
    _problem(inproc.post("/v1/studies", json=[1, 2], headers=RW), 422, "JSON object")


def test_a_declared_oversized_body_is_refused_before_reading(inproc) -> None:
    response = inproc.post(
        "/v1/studies", content=b"x" * 300_000, headers={"content-type": "application/json", **RW}
    )
    _problem(response, 413, "limited")


def test_the_submit_body_is_documented(inproc) -> None:
    body = inproc.get("/openapi.json").json()["paths"]["/v1/studies"]["post"]["requestBody"]
    assert body["required"] and "application/json" in body["content"]
