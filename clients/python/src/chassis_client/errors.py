"""Errors: every refused request raises a `ChassisError` subclass chosen by its status."""

from __future__ import annotations

import json
from typing import Any

import httpx

__all__ = [
    "BadRequest",
    "ChassisError",
    "Conflict",
    "ConnectionLost",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "PayloadTooLarge",
    "ServerError",
    "Unauthorized",
    "Unavailable",
    "error_for",
]


class ChassisError(Exception):
    """The server refused a request: its `application/problem+json` answer, field by field.

    `status`, `title` and `detail` are always set; `type` names the kind of problem
    (`/problems/conflict`), `field` the request field at fault when there is one, and `problem`
    is the whole body as received (a newer server may add fields).
    """

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        type: str | None = None,
        field: str | None = None,
        problem: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type
        self.field = field
        self.problem = problem or {}
        where = f" (at {field})" if field else ""
        super().__init__(f"{status} {title}: {detail}{where}")


class BadRequest(ChassisError):
    """400: the request is malformed; `field` names what."""


class Unauthorized(ChassisError):
    """401: no token, or not a live one."""


class Forbidden(ChassisError):
    """403: the token's role may not do this."""


class NotFound(ChassisError):
    """404: no such run, call, agent or token."""


class Conflict(ChassisError):
    """409: the run's state does not allow it (decided already, ended, driven elsewhere)."""


class PayloadTooLarge(ChassisError):
    """413: the body is too large."""


class InvalidRequest(ChassisError):
    """422: well-formed but invalid (edited arguments failing the tool's schema)."""


class Unavailable(ChassisError):
    """503: the journal cannot be reached, or the request took too long."""


class ServerError(ChassisError):
    """Another 5xx: the server failed; its log has the details."""


class ConnectionLost(ChassisError):
    """A stream could not be resumed: the server stayed unreachable."""


_BY_STATUS: dict[int, type[ChassisError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidRequest,
    503: Unavailable,
}


def error_for(response: httpx.Response) -> ChassisError:
    """The error a refused response stands for (its body must have been read)."""
    status = response.status_code
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ChassisError)
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if isinstance(body, dict) and "title" in body:
        return cls(
            status,
            str(body.get("title", "")),
            str(body.get("detail", "")),
            type=body.get("type"),
            field=body.get("field"),
            problem=body,
        )
    text = response.text.strip()[:500]
    return cls(status, response.reason_phrase or "HTTP error", text)
