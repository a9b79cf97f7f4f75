"""Errors as one line: what a study's status, a trial's MLflow tag and the API show.

Tracebacks belong in driver.log; a status or a tag carries the exception's type and message
(the trial's own exception, not Ray's wrapper around it), without paths to the server's code.
"""

from __future__ import annotations

MAX_CHARS = 500


class StudyError(RuntimeError):
    """A study that cannot run (bad references, a spec that changed under a restore, a
    resource request no node can hold, no trial completed, ...)."""


def one_line(err: BaseException | str | None) -> str:
    """``"NonFiniteLoss: loss is nan at epoch 3, step 17"`` for an exception, a Ray task
    error wrapping one, or the text of a traceback (its last line)."""
    if err is None:
        return "unknown error"
    if isinstance(err, str):
        lines = [line.strip() for line in err.strip().splitlines() if line.strip()]
        return _clip(lines[-1] if lines else "unknown error")
    cause = getattr(err, "cause", None)  # ray.exceptions.RayTaskError: the trial's exception
    if isinstance(cause, BaseException) and cause is not err:
        return one_line(cause)
    lines = str(err).strip().splitlines()
    message = lines[0] if lines else ""
    name = type(err).__name__
    return _clip(f"{name}: {message}" if message else name)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 3] + "..."
