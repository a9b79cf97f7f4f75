"""Property-based fuzzing of the OpenAPI schema against the real server: no 5xx, ever, and
every answer's body as its status is declared.

Every operation is exercised with requests that schemathesis generates from the schema
(hypothesis strategies), authenticated with a read-write token; at least 500 in all.
(schemathesis' pytest plugin does not load under pytest 9, so the strategies are driven
with hypothesis directly.)
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
import time

import httpx
import psutil
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from .conftest import RW, Api

EXAMPLES_PER_OPERATION = 60


def _exercise(operation, url: str, statuses: list[int]):
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def run(case) -> None:
        response = case.call(base_url=url, headers=RW, timeout=30)
        statuses.append(response.status_code)
        assert response.status_code < 500, (
            operation.method,
            operation.path,
            case.body,
            response.text[:300],
        )
        if response.status_code >= 400:
            content_type = response.headers.get("content-type", [""])  # values are lists
            assert content_type[0].startswith("application/problem+json"), content_type
        # the body matches the schema its status is declared with (raises if it does not)
        case.operation.validate_response(response, case=case)

    return run


def test_no_server_errors(tmp_path) -> None:
    api = Api(tmp_path)
    api.env["PCD_MAX_CONCURRENT_STUDIES"] = "1"
    api.start()
    statuses: list[int] = []
    try:
        schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 10
        for operation in operations:
            _exercise(operation, api.url, statuses)()
    finally:
        api.stop()
        for p in psutil.process_iter(["cmdline"]):
            parts = p.info["cmdline"] or []
            if any("service.runner.launch" in c for c in parts) and any(
                str(tmp_path) in c for c in parts
            ):
                p.kill()
    assert len(statuses) >= 500, len(statuses)


# ------------------------------------------------------------------ hostile input, on the wire
# Hand-made hostile requests against the real server over loopback, while another thread
# polls /healthz every 100 ms: each request is a 4xx problem (never a 5xx) naming the field,
# the keep-alive connection serves a valid request right after, and no /healthz answer takes
# 1 s or more (the one latency bound: the acceptance criterion).
HEALTHZ_BOUND_S = 1.0
NAMED = "pcd-digits"


def _named(overrides: dict, *, raw: str | None = None) -> bytes:
    if raw is not None:
        return raw.encode()
    return json.dumps({"search_space": NAMED, "overrides": overrides}).encode()


def _nested(depth: int) -> object:
    nested: object = 1
    for _ in range(depth):
        nested = [nested]
    return nested


VALIDATE = "/v1/studies?validate_only=true"
NOT_FINITE = '{"search_space": "pcd-digits", "overrides": {"budget.time_limit_s": %s}}'
HOSTILE = [
    # method, path, body, with a token, the statuses allowed, what the detail names
    pytest.param(
        "POST",
        VALIDATE,
        _named({"space.warmup": {"type": "int", "low": 0, "high": 10_000_000}}),
        True,
        {422},
        "space.warmup",
        id="int-range-1e7",  # warm-up longer than the run
    ),
    pytest.param(
        "POST",
        VALIDATE,
        _named(
            {
                "space.stages": {"type": "int", "low": 1, "high": 10**12},
                "space.alpha": {
                    "type": "float",
                    "low": 0.1,
                    "high": 3.0,
                    "when": {"stages": 10**12 - 1},
                },
            }
        ),
        True,
        {422},
        "space.stages",
        id="when-range-1e12",
    ),
    pytest.param(
        "POST",
        VALIDATE,
        _named(
            {
                "space.temperature": {"type": "int", "low": 1, "high": 10**12},
                "space.alpha": {
                    "type": "float",
                    "low": 0.1,
                    "high": 3.0,
                    "when": {"temperature": 10**12},
                },
            }
        ),
        True,
        {422},
        "space.temperature",
        id="when-value-1e12",  # temperatures are bounded (MAX_TEMPERATURE)
    ),
    pytest.param(
        "POST",
        VALIDATE,
        _named({"space.alpha": {"type": "float", "low": 0.1, "high": 3.0, "when": _nested(300)}}),
        True,
        {422},
        "overrides.space.alpha.when",
        id="nested-300",
    ),
    pytest.param(
        "POST", VALIDATE, b"[" * 100_000 + b"]" * 100_000, True, {422}, "nested", id="nested-1e5"
    ),
    pytest.param(
        "POST",
        VALIDATE,
        _named({"data.root": "digits\x00/../../etc"}),
        True,
        {422},
        "overrides.data.root",
        id="nul-data-root",
    ),
    pytest.param(
        "POST",
        VALIDATE,
        _named({"teacher": {"checkpoint": "t\x00.pt"}}),
        True,
        {422},
        "overrides.teacher.checkpoint",
        id="nul-teacher-checkpoint",
    ),
    pytest.param("GET", "/v1/studies/a%00b", b"", True, {404}, "no study", id="nul-id-get"),
    pytest.param(
        "POST", "/v1/studies/a%00b/resume", b"", True, {404}, "no study", id="nul-id-resume"
    ),
    pytest.param("DELETE", "/v1/studies/%00", b"", True, {404}, "no study", id="nul-id-delete"),
    *[
        pytest.param(
            "POST",
            VALIDATE,
            _named({}, raw=NOT_FINITE % value),
            True,
            {422},
            "overrides.budget.time_limit_s",
            id=f"not-finite-{value}",
        )
        for value in ("NaN", "Infinity", "-Infinity", "1e999")
    ],
    pytest.param(
        "POST", "/v1/studies", b'{"search_space": ', False, {401}, "Bearer", id="malformed-no-token"
    ),
    pytest.param(
        "POST", "/v1/studies", b'{"search_space": ', True, {422}, "not valid JSON", id="malformed"
    ),
]


class HealthPoller:
    """GET /healthz every 100 ms on a connection of its own; every answer's time."""

    def __init__(self, port: int, max_polls: int = 3000) -> None:
        self.port, self.max_polls = port, max_polls
        self.times: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        while not self._stop.is_set() and len(self.times) < self.max_polls:
            started = time.monotonic()
            try:
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    self.failures.append(f"status {response.status}")
            except (OSError, http.client.HTTPException) as err:
                self.failures.append(repr(err))
                conn.close()
            self.times.append(time.monotonic() - started)
            self._stop.wait(0.1)
        conn.close()

    def check(self) -> None:
        assert len(self.times) >= 2, "the poller did not run"
        assert not self.failures, self.failures
        assert max(self.times) < HEALTHZ_BOUND_S, sorted(self.times)[-5:]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    api = Api(tmp_path_factory.mktemp("hostile"))
    api.start()
    try:
        yield api
    finally:
        api.stop()


def _check_problem(status: int, headers, body: bytes, statuses: set[int], names: str) -> None:
    assert status in statuses, (status, body[:300])
    assert headers["content-type"].startswith("application/problem+json"), headers
    detail = json.loads(body)["detail"]
    assert names in detail, detail


def _usable(conn: http.client.HTTPConnection, local_port: int) -> None:
    """The same TCP connection answers a valid request."""
    conn.request("GET", "/v1/studies", headers=RW)
    response = conn.getresponse()
    assert response.status == 200, response.read()[:300]
    response.read()
    assert conn.sock is not None and conn.sock.getsockname()[1] == local_port, "reconnected"


@pytest.mark.parametrize("method,path,body,authenticated,statuses,names", HOSTILE)
def test_hostile_input_is_4xx_and_healthz_stays_fast(
    live, method, path, body, authenticated, statuses, names
) -> None:
    headers = {"content-type": "application/json", **(RW if authenticated else {})}
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
    conn.connect()
    local_port = conn.sock.getsockname()[1]
    with HealthPoller(live.port) as poller:
        time.sleep(0.25)  # a poll before
        started = time.monotonic()
        conn.request(method, path, body=body or None, headers=headers)
        response = conn.getresponse()
        answer = response.read()
        took = time.monotonic() - started
        _check_problem(response.status, response.headers, answer, statuses, names)
        _usable(conn, local_port)
        time.sleep(0.25)  # and one after
    conn.close()
    poller.check()
    assert took < 15, took  # the validator's own time limit is 10 s


def test_huge_chunked_body_without_token_is_401_unread(live) -> None:
    """100 MB in 1 MB chunks, no token: 401 without reading the body; /healthz stays fast."""
    sock = socket.create_connection(("127.0.0.1", live.port), timeout=30)
    chunk = b"%x\r\n%s\r\n" % (1 << 20, b"x" * (1 << 20))
    sent = 0
    with HealthPoller(live.port) as poller:
        time.sleep(0.25)  # a poll before
        sock.sendall(
            b"POST /v1/studies HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        deadline = time.monotonic() + 60
        try:
            while sent < 100 and time.monotonic() < deadline:
                if select.select([sock], [], [], 0)[0]:
                    break  # answered before the body was sent
                sock.sendall(chunk)
                sent += 1
            else:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed
        response = http.client.HTTPResponse(sock)
        response.begin()
        answer = response.read()
        time.sleep(0.25)  # and one after
    sock.close()
    assert sent < 100, "the whole body was read before the answer"
    _check_problem(response.status, response.headers, answer, {401}, "Bearer")
    poller.check()
    # the server is fine after it, on a fresh connection
    assert httpx.get(f"{live.url}/v1/studies", headers=RW, timeout=10).status_code == 200
