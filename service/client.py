"""A small Python client of the pcd REST API (httpx)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx


class ApiError(RuntimeError):
    """An error answer of the service, with its problem+json detail."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class PcdClient:
    """``PcdClient("http://127.0.0.1:8000", token="...")``."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PcdClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            response = self._http.request(method, path, **kw)
        except httpx.HTTPError as err:
            raise ApiError(0, f"cannot reach {self._http.base_url}: {err}") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ApiError(response.status_code, str(detail))
        return response.json() if response.content else None

    def submit(
        self,
        body: dict[str, Any],
        *,
        validate_only: bool = False,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._call(
            "POST",
            "/v1/studies",
            json=body,
            headers=headers,
            params={"validate_only": str(validate_only).lower()},
        )

    def studies(self, status: str | None = None, offset: int = 0, limit: int = 50) -> dict:
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if status:
            params["status"] = status
        return self._call("GET", "/v1/studies", params=params)

    def study(self, study_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/studies/{study_id}")

    def trials(self, study_id: str, offset: int = 0, limit: int = 50) -> dict[str, Any]:
        return self._call(
            "GET", f"/v1/studies/{study_id}/trials", params={"offset": offset, "limit": limit}
        )

    def cancel(self, study_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/studies/{study_id}/cancel")

    def resume(self, study_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/studies/{study_id}/resume")

    def delete(self, study_id: str) -> None:
        self._call("DELETE", f"/v1/studies/{study_id}")

    def wait(
        self,
        study_id: str,
        *,
        poll: float = 1.0,
        timeout: float | None = None,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the study succeeds, fails or is cancelled."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            study = self.study(study_id)
            if on_update is not None:
                on_update(study)
            if study["status"] in ("succeeded", "failed", "cancelled"):
                return study
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"study {study_id} still {study['status']}")
            time.sleep(poll)
