"""/docs and /redoc work with no network: every script, stylesheet and icon they load comes from this server."""

from __future__ import annotations

import re

import pytest


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_local_assets(client, page: str) -> None:  # type: ignore[no-untyped-def]
    html = client.get(page)
    assert html.status_code == 200
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html.text)
    urls += re.findall(r"""url:\s*'([^']+)'""", html.text)  # Swagger UI's openapi URL is set in its script
    assert urls, html.text
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"{page} loads {url} from elsewhere"
        fetched = client.get(url)
        assert fetched.status_code == 200, url
        assert len(fetched.content) > 100, url
    assert not re.search(r"https?://(?!127\.0\.0\.1)", re.sub(r"<!--.*?-->", "", html.text, flags=re.S)), html.text
