"""Suite-wide fixtures, registered once for tests/ and clients/python/tests alike."""

pytest_plugins = ["tests.fixtures", "tests.live_server"]
