"""A small Python client of the pcd REST API (httpx)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx


class ApiError(RuntimeError):
    """An error answer of the service, with its problem+json detail (status 0: no answer)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}" if status else detail)
        self.status = status
        self.detail = detail


class StudyIdError(ValueError):
    """An id prefix that names no study, or more than one."""


FULL_ID_LENGTH = 32  # the store's ids: uuid4 hex
LIST_PAGE = 500  # the most studies the list endpoint returns at once


class PcdClient:
    """``PcdClient("http://127.0.0.1:8000", token="...")``."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 30.0,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )

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
            where = str(self._http.base_url).rstrip("/")
            reason = str(err) or type(err).__name__
            raise ApiError(
                0, f"cannot reach {where}: {reason} (set PCD_API_URL to the API's address)"
            ) from None
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

    def resolve(self, id_or_prefix: str) -> str:
        """The full id of the one study whose id starts with ``id_or_prefix`` (the short ids
        `pcd study list` prints work); StudyIdError for none or several."""
        prefix = id_or_prefix.strip().lower()
        if not prefix:
            raise StudyIdError("a study id (or a unique prefix of one) is required")
        if len(prefix) >= FULL_ID_LENGTH:
            return prefix  # a full id: the API answers 404 if there is no such study
        matches: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self.studies(offset=offset, limit=LIST_PAGE)
            matches += [s for s in page["items"] if s["id"].startswith(prefix)]
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                break
        if not matches:
            raise StudyIdError(f"no study id starts with {prefix!r} (see `pcd study list`)")
        if len(matches) > 1:
            shown = ", ".join(f"{s['id'][:12]} ({s['name']}, {s['status']})" for s in matches[:10])
            more = f" and {len(matches) - 10} more" if len(matches) > 10 else ""
            raise StudyIdError(
                f"id prefix {prefix!r} matches {len(matches)} studies: {shown}{more}; "
                "give more characters"
            )
        return matches[0]["id"]

    def study(self, study_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/studies/{study_id}")

    def trials(self, study_id: str, offset: int = 0, limit: int = 50) -> dict[str, Any]:
        return self._call(
            "GET", f"/v1/studies/{study_id}/trials", params={"offset": offset, "limit": limit}
        )

    def set_budget(self, study_id: str, trials: int) -> dict[str, Any]:
        """Change a queued or running study's trial budget."""
        return self._call("PATCH", f"/v1/studies/{study_id}", json={"budget": {"trials": trials}})

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
