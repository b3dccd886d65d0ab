"""tests/ folder conftest: the fixtures live in tests/fixtures.py (registered by the root conftest.py)."""

from tests.fixtures import ROOT_KEY, auth

__all__ = ["ROOT_KEY", "auth"]
