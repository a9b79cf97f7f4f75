"""From a request body to a StudySpec within this service's limits, off the event loop.

Validation is bounded by the size of the body: ranges are checked by their ends and grids
counted arithmetically, never enumerated. It still runs in a few worker threads of its
own (so a burst of submissions cannot take the threads other routes need) and under a time
limit, answered with 503 + Retry-After when the service is too busy to finish in time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from pydantic import ValidationError

from search_spaces import SpecError, builtin_names, load_spec, parse_spec
from search_spaces.errors import describe_validation_error
from search_spaces.schema import StudySpec
from service.api.body import parse_json
from service.api.errors import ApiError
from service.api.references import check_references
from service.api.schemas import NamedSpaceRequest
from service.settings import Settings

TIME_LIMIT_S = 10.0
THREADS = 4


class SpecValidator:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._limiter: anyio.CapacityLimiter | None = None  # made inside the event loop

    async def __call__(self, raw: bytes) -> StudySpec:
        """The spec in a request body (ApiError 422 naming the field if it is not one)."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(THREADS)
        with anyio.move_on_after(TIME_LIMIT_S) as scope:
            return await anyio.to_thread.run_sync(
                self.validate, raw, limiter=self._limiter, abandon_on_cancel=True
            )
        assert scope.cancelled_caught
        raise ApiError(
            503,
            f"the spec could not be validated within {TIME_LIMIT_S:.0f} s; retry later",
            {"Retry-After": "5"},
        )

    def validate(self, raw: bytes) -> StudySpec:
        body = parse_json(raw)
        if not isinstance(body, dict):
            raise ApiError(422, "body: a study spec or a named space must be a JSON object")
        spec = _spec(body)
        check_limits(spec, self.settings)
        check_references(spec, self.settings)
        return spec


def _spec(body: dict[str, Any]) -> StudySpec:
    try:
        if "search_space" in body:
            named = NamedSpaceRequest.model_validate(body)
            return load_named(named.search_space, named.overrides)
        return parse_spec(body, source="body")
    except SpecError as err:
        raise ApiError(422, str(err)) from None
    except ValidationError as err:  # of the request's own model: "field: message", no class
        raise ApiError(422, describe_validation_error(err)) from None
    except ValueError as err:
        raise ApiError(422, str(err).splitlines()[0]) from None


def load_named(name: str, overrides: dict[str, Any]) -> StudySpec:
    if name not in builtin_names():
        raise SpecError(
            f"search_space: no space named {name!r}; one of {', '.join(builtin_names())}"
        )
    return load_spec(name, overrides, source=name)  # errors name the space, not a server path


def check_limits(spec: StudySpec, settings: Settings) -> None:
    """This service's own limits (ApiError 422 naming the field)."""
    if spec.budget.trials > settings.max_trials:
        raise ApiError(422, f"budget.trials: at most {settings.max_trials} on this service")
    epochs = {
        "budget.max_epochs": spec.budget.max_epochs,
        "training.epochs": spec.training.epochs or 0,
        "teacher.epochs": spec.teacher.epochs if spec.teacher.arch is not None else 0,
    }
    for field, value in epochs.items():
        if value > settings.max_epochs:
            raise ApiError(422, f"{field}: at most {settings.max_epochs} on this service")
    if spec.data.root is not None and escapes(settings.data_root, spec.data.root):
        raise ApiError(422, "data.root: must name a folder under the data root")
    if spec.teacher.checkpoint is not None and escapes(
        settings.teacher_root, spec.teacher.checkpoint
    ):
        raise ApiError(422, "teacher.checkpoint: must name a file under the teacher root")


def escapes(root: Path, name: str) -> bool:
    """Whether ``name`` is not a path under ``root`` (or no path at all: a NUL in it)."""
    try:
        if Path(name).is_absolute() or ".." in Path(name).parts:
            return True
        base = root.resolve()
        return not (base / name).resolve().is_relative_to(base)
    except (ValueError, OSError):  # embedded NUL, a name too long for the filesystem
        return True
