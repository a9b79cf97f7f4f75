"""A JSON request body, parsed by the route itself (after authentication: FastAPI would
parse a declared body before the dependencies run) within the body limit (enforced while
it streams in). Synchronous: the caller runs it off the event loop."""

from __future__ import annotations

import json
from typing import Any

from service.api.errors import ApiError


def parse_json(raw: bytes) -> Any:
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ApiError(422, "body: nested too deeply") from None
    except ValueError as err:  # JSONDecodeError, invalid UTF-8, an integer too long to parse
        raise ApiError(422, f"body: not valid JSON ({_first_line(err)})") from None
    return value


def _first_line(err: ValueError) -> str:
    return str(err).splitlines()[0][:200]
