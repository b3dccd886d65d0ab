"""SDK tests run against a real server: the suite's database fixtures (tests/fixtures.py, registered by the
root conftest.py) plus uvicorn (tests/live_server.py)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root, for `tests` and `api`

from memsvc_client import MemsvcClient, RetryPolicy  # noqa: E402

from tests.fixtures import ROOT_KEY  # noqa: E402
from tests.live_server import LiveServer  # noqa: E402

FAST_RETRIES = RetryPolicy(max_retries=6, backoff_base=0.05, backoff_max=0.5)


@pytest.fixture()
def root(live_server: LiveServer) -> Iterator[MemsvcClient]:
    with MemsvcClient(live_server.url, ROOT_KEY, retry_policy=FAST_RETRIES) as client:
        yield client


@pytest.fixture()
def tenant_key(root: MemsvcClient) -> str:
    """A read/write/admin key of a fresh tenant, made through the SDK's own admin calls."""
    tenant = root.create_tenant(f"sdk-{uuid.uuid4().hex[:10]}")
    return root.create_key(["read", "write", "admin"], tenant_id=tenant.id, name="sdk tests").key


@pytest.fixture()
def mem(live_server: LiveServer, tenant_key: str) -> Iterator[MemsvcClient]:
    with MemsvcClient(live_server.url, tenant_key, retry_policy=FAST_RETRIES) as client:
        yield client
