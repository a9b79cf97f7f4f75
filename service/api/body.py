"""A JSON request body, parsed by the route itself (after authentication: FastAPI would
parse a declared body before the dependencies run) within the body limit (enforced while
it streams in), and checked before anything else sees it: bounded nesting, finite numbers,
no NUL characters. Synchronous: the caller runs it off the event loop."""

from __future__ import annotations

import json
import math
from typing import Any

from service.api.errors import ApiError

MAX_DEPTH = 32  # a spec is 6 deep at most; deeper values only cost (and broke serialisers)
MAX_INT = 2**63 - 1  # what every store and serialiser downstream still takes


def parse_json(raw: bytes) -> Any:
    try:
        value = json.loads(raw)
    except RecursionError:  # far deeper than MAX_DEPTH
        raise ApiError(422, f"body: nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as err:  # JSONDecodeError, invalid UTF-8, an integer too long to parse
        raise ApiError(422, f"body: not valid JSON ({_first_line(err)})") from None
    problem = check_json(value)
    if problem is not None:
        raise ApiError(422, problem)
    return value


def check_json(value: Any) -> str | None:
    """What is wrong with a parsed JSON value (naming the field), or None."""
    stack: list[tuple[str, Any, int]] = [("", value, 1)]
    while stack:
        path, node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"{path or 'body'}: nested more than {MAX_DEPTH} levels deep"
        error = _check_scalar(node)
        if error is not None:
            return f"{path or 'body'}: {error}"
        if isinstance(node, dict):
            for key, child in node.items():
                if "\x00" in key:
                    return f"{_join(path, repr(key))}: keys must not contain NUL characters"
                stack.append((_join(path, key), child, depth + 1))
        elif isinstance(node, list):
            stack.extend((f"{path}[{i}]", child, depth + 1) for i, child in enumerate(node))
    return None


def _check_scalar(node: Any) -> str | None:
    if isinstance(node, float) and not math.isfinite(node):
        return f"{node} is not a finite number"
    if isinstance(node, int) and not isinstance(node, bool) and abs(node) > MAX_INT:
        return f"integers are limited to +-{MAX_INT}"
    if isinstance(node, str) and "\x00" in node:
        return "must not contain NUL characters"
    return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _first_line(err: ValueError) -> str:
    return str(err).splitlines()[0][:200]
