"""A client of the chassis HTTP API (`chassis serve`).

    from chassis_client import Client

    client = Client("http://127.0.0.1:7700/#token=chs_…")
    run = client.start_run("payer", "invoice 7")
    for event in client.stream(run.run_id):
        if event.kind == "approval_requested":
            client.approve(run.run_id, event["call_id"])

`AsyncClient` has the same methods, awaited. Refused requests raise `ChassisError` subclasses.
"""

from .async_client import AsyncClient
from .client import Client
from .errors import (
    BadRequest,
    ChassisError,
    Conflict,
    ConnectionLost,
    Forbidden,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ServerError,
    Unauthorized,
    Unavailable,
)
from .models import *  # noqa: F403
from .models import __all__ as _models

__all__ = [
    "AsyncClient",
    "BadRequest",
    "ChassisError",
    "Client",
    "Conflict",
    "ConnectionLost",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "PayloadTooLarge",
    "ServerError",
    "Unauthorized",
    "Unavailable",
    *_models,
]
