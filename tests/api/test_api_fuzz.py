"""Property-based fuzzing of the OpenAPI schema against the real server: no 5xx, ever.

Every operation is exercised with requests that schemathesis generates from the schema
(hypothesis strategies), authenticated with a read-write token; at least 500 in all.
(schemathesis' pytest plugin does not load under pytest 9, so the strategies are driven
with hypothesis directly.)
"""

from __future__ import annotations

import psutil
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
