"""Fixtures: a real `chassis serve` for the session (see `harness.py`) and clients of it."""

from __future__ import annotations

from typing import Iterator

import pytest

from chassis_client import Client

from .harness import Server, chassis_bin, running

__all__ = ["Server"]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("chassis"), chassis_bin()) as server:
        yield server


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    """A client with an approver's token (approvers may also start and cancel runs)."""
    with server.client() as c:
        yield c
