"""SDK tests run against a real server: the suite's database fixtures (tests/conftest.py) plus uvicorn.

tests/conftest.py cannot be listed in `pytest_plugins` here (pytest would register it twice when both
test folders run), so its fixtures are imported; a run of the whole suite starts one database per folder.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root, for `tests` and `api`

from memsvc_client import MemsvcClient, RetryPolicy  # noqa: E402

from tests.conftest import *  # noqa: E402, F403  (database_url, settings, engine, app, client, make_tenant, key)
from tests.conftest import ROOT_KEY  # noqa: E402
from tests.live_server import *  # noqa: E402, F403  (the live_server fixture)
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
