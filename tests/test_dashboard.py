"""The admin dashboard in a real headless Chromium against the app served by uvicorn on a real socket.

Needs Debian's chromium + chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver) and PyPI selenium.
Without them the test is skipped with the install commands, unless MEMSVC_REQUIRE_BROWSER=1 (CI), where a
missing browser is a failure: a dashboard nobody tested in a browser is not tested.
Screenshots of every view go to $MEMSVC_DASHBOARD_SHOTS (default: a temp dir), never into the repo.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from tests.conftest import auth
from tests.live_server import LiveServer

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
INSTALL = ("apt-get update && apt-get install -y chromium chromium-driver; "
           "pip install selenium (into the project venv)")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1440,1000", "--lang=en-US")
WAIT_S = 30
# A job result longer than any table cell: the page must show all of it, readably.
BIG_RESULT = {"stage": "done", "episodes": 120, "created": [str(uuid.UUID(int=i)) for i in range(40)],
              "superseded": [{"old": str(uuid.UUID(int=100 + i)), "new": str(uuid.UUID(int=200 + i))}
                             for i in range(5)],
              "llm_usage": {"calls": 3, "prompt_tokens": 5120, "completion_tokens": 880, "cost_usd": 0.0021}}
XSS = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> tagged text'


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "PyPI package selenium is not installed"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).exists() or shutil.which(Path(path).name)):
            return f"{path} is not installed"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator:  # type: ignore[type-arg]
    why = _missing()
    if why:
        if os.environ.get("MEMSVC_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{why}; install with: {INSTALL}")
        pytest.skip(f"headless Chromium unavailable ({why}); install with: {INSTALL}")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download a driver or browser
    profile = tempfile.mkdtemp(prefix="memsvc-chromium-")
    options = Options()
    options.binary_location = shutil.which("chromium") or CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def server(app) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    live = LiveServer(app).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = Path(os.environ.get("MEMSVC_DASHBOARD_SHOTS") or tempfile.mkdtemp(prefix="memsvc-dashboard-"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _seed(client, key, engine):  # type: ignore[no-untyped-def]
    """A tenant with memories in several tiers and kinds, lineage, and two jobs."""
    from memsvc import jobs
    from memsvc.db import session_scope
    from memsvc.models import Memory, MemoryLink

    items = [
        {"content": "Dana moved to Lyon in May 2024 and works at the Lyon office, three stops from the station; "
                    "the move went well apart from the piano, which the movers left in the courtyard overnight.",
         "user_id": "dana",
         "session_id": "s1", "importance": 0.8},
        {"content": "Dana said the Lyon office has a rooftop garden.", "user_id": "dana", "session_id": "s1"},
        {"content": "Dana lives in Lyon.", "kind": "semantic", "user_id": "dana"},
        {"content": "Dana lived in Paris.", "kind": "semantic", "user_id": "dana"},
        {"content": "Dana prefers short answers.", "kind": "profile", "user_id": "dana"},
        {"content": "To deploy, run make release.", "kind": "procedural", "user_id": "dana"},
        {"content": XSS, "user_id": "eve"},
    ] + [{"content": f"bulk note number {i} about the weather", "user_id": "bulk"} for i in range(52)]
    created = client.post("/v1/memories/batch", headers=auth(key), json={"items": items})
    assert created.status_code == 201, created.text
    ids = [m["id"] for m in created.json()["items"]]
    episode, garden, fact, old_fact = (uuid.UUID(i) for i in ids[:4])
    bulk = [uuid.UUID(i) for i in ids[7:]]
    with session_scope(engine) as session:
        tenant_id = session.get(Memory, episode).tenant_id
        session.execute(update(Memory).where(Memory.id.in_(bulk[:10])).values(tier="summary", summary="bulk weather"))
        session.execute(update(Memory).where(Memory.id.in_(bulk[10:13])).values(tier="gist", gist="weather"))
        session.execute(update(Memory).where(Memory.id == garden).values(tier="archived", gist="rooftop garden"))
        session.execute(update(Memory).where(Memory.id == old_fact).values(superseded_by=fact))
        session.add_all([
            MemoryLink(src_id=fact, dst_id=episode, relation="derived_from", tenant_id=tenant_id),
            MemoryLink(src_id=fact, dst_id=old_fact, relation="supersedes", tenant_id=tenant_id),
        ])
        # Due in a day and never enqueued: no worker of another test can pick it up while we look.
        ok, _ = jobs.create_job(session, tenant_id=tenant_id, kind="consolidate", scope={"user_id": "dana"},
                                run_after=datetime.now(UTC) + timedelta(days=1))
        bad, _ = jobs.create_job(session, tenant_id=tenant_id, kind="decay", scope={})
        jobs.mark_running(session, bad.id)
        jobs.mark_failed(session, bad.id, "LLM answer was not valid JSON (3 attempts)")
        done, _ = jobs.create_job(session, tenant_id=tenant_id, kind="consolidate", scope={"user_id": "dana"})
        jobs.mark_running(session, done.id)
        jobs.mark_succeeded(session, done.id, BIG_RESULT)
        job_ids = [str(ok.id), str(bad.id), str(done.id)]
    expected = Counter()
    for i, item in enumerate(items):
        tier = ("archived" if i == 1 else "summary" if 7 <= i < 17 else "gist" if 17 <= i < 20 else "verbatim")
        expected[(tier, item.get("kind", "episodic"))] += 1
    return {"ids": ids, "episode": str(episode), "fact": str(fact), "old_fact": str(old_fact),
            "jobs": job_ids, "cells": expected, "contents": [i["content"] for i in items]}


def test_dashboard_in_headless_chromium(browser, server, client, make_tenant, engine, shots):  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    key = make_tenant()
    seeded = _seed(client, key, engine)
    d = browser
    wait = WebDriverWait(d, WAIT_S)

    def css(selector):  # type: ignore[no-untyped-def]
        return d.find_element(By.CSS_SELECTOR, selector)

    def all_css(selector):  # type: ignore[no-untyped-def]
        return d.find_elements(By.CSS_SELECTOR, selector)

    def tab(name):  # type: ignore[no-untyped-def]
        css(f'#nav button[data-view="{name}"]').click()
        wait.until(lambda _: css(f"#view-{name}").is_displayed())

    def shot(name):  # type: ignore[no-untyped-def]
        d.save_screenshot(str(shots / f"dashboard-{name}.png"))

    # -- connect with the key; it is kept for the tab's session only ----------------------------
    d.get(server.url + "/dashboard")
    wait.until(lambda _: d.execute_script("return document.body.dataset.ready") == "true")
    # No key yet: the page says where the key is and how to paste it, instead of an empty table.
    _assert_first_run_hint(d)
    shot("first-run")
    css("#key-input").send_keys(key)
    css("#key-save").click()
    wait.until(lambda _: "connected" in css("#key-status").text)
    assert not css("#first-run").is_displayed()
    assert d.execute_script("return sessionStorage.getItem('memsvc.apiKey')") == key
    assert d.execute_script("return localStorage.length") == 0

    # -- memories: the seeded contents, paged by cursor ------------------------------------------
    wait.until(lambda _: len(all_css("#mem-table tr.mem-row")) >= 50)
    assert len(all_css("#mem-table tr.mem-row")) == 50  # one page
    assert css("#mem-more").is_displayed()
    css("#mem-more").click()
    wait.until(lambda _: len(all_css("#mem-table tr.mem-row")) == len(seeded["ids"]))
    assert not css("#mem-more").is_displayed()
    shown = {row.get_attribute("data-id"): row.find_element(By.CSS_SELECTOR, "td.content").get_attribute("textContent")
             for row in all_css("#mem-table tr.mem-row")}
    assert shown == dict(zip(seeded["ids"], seeded["contents"], strict=True))
    # Memory text is shown as text, never run as HTML.
    assert d.execute_script("return window.__pwned === undefined")
    assert not all_css("#mem-table img") and not all_css("#mem-table script")
    # At 1400 x 900, with a memory's details open beside the whole list, the Retention column is on screen.
    css(f'#mem-table tr.mem-row[data-id="{seeded["episode"]}"]').click()
    wait.until(lambda _: all_css(f'#mem-detail .memory[data-id="{seeded["episode"]}"]'))
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                      {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False})
    try:
        _assert_retention_column_visible(d)
        shot("memories-1400")
    finally:
        d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    # Filter by scope and kind.
    css('#mem-filters [name="user_id"]').send_keys("dana")
    Select(css('#mem-filters [name="kind"]')).select_by_value("semantic")
    css('#mem-filters button[type="submit"]').click()
    wait.until(lambda _: {r.get_attribute("data-id") for r in all_css("#mem-table tr.mem-row")}
               == {seeded["fact"], seeded["old_fact"]})
    assert "superseded" in css(f'#mem-table tr.mem-row[data-id="{seeded["old_fact"]}"]').text
    assert "superseded" not in css(f'#mem-table tr.mem-row[data-id="{seeded["fact"]}"]').text

    # Detail panel with lineage, both directions, and navigation along it.
    css(f'#mem-table tr.mem-row[data-id="{seeded["fact"]}"]').click()
    wait.until(lambda _: all_css(f'#mem-detail .memory[data-id="{seeded["fact"]}"]'))
    detail = css("#mem-detail")
    assert "Dana lives in Lyon." in detail.text
    links = {(li.get_attribute("data-relation"), li.get_attribute("data-direction"), li.get_attribute("data-id"))
             for li in all_css("#lineage li.link")}
    assert links == {("derived_from", "out", seeded["episode"]), ("supersedes", "out", seeded["old_fact"])}
    assert "derived from" in detail.text and "supersedes" in detail.text
    shot("memories")
    css(f'#lineage li.link[data-id="{seeded["old_fact"]}"] a').click()
    wait.until(lambda _: all_css(f'#mem-detail .memory[data-id="{seeded["old_fact"]}"]'))
    assert "superseded by" in css("#lineage").text

    # -- tiers: bars whose counts match what was stored ------------------------------------------
    tab("tiers")
    wait.until(lambda _: all_css("#tier-chart rect.bar"))
    cells = {(r.get_attribute("data-tier"), r.get_attribute("data-kind")): int(r.get_attribute("data-count"))
             for r in all_css("#tier-chart rect.bar")}
    assert cells == dict(seeded["cells"])
    totals = {g.get_attribute("data-tier"): int(g.get_attribute("data-total"))
              for g in all_css("#tier-chart g.tier-bar")}
    assert totals == {"verbatim": 45, "summary": 10, "gist": 3, "archived": 1}
    heights = {r.get_attribute("data-tier"): float(r.get_attribute("height")) for r in all_css("#tier-chart rect.bar")
               if r.get_attribute("data-kind") == "episodic"}
    assert heights["verbatim"] > heights["summary"] > heights["gist"] > heights["archived"] > 0  # drawn to scale
    shot("tiers")

    # -- retention curve of a memory, with the policy's thresholds -------------------------------
    tab("memories")
    css(f'#mem-table tr.mem-row[data-id="{seeded["fact"]}"]').click()
    wait.until(lambda _: all_css(f'#mem-detail .memory[data-id="{seeded["fact"]}"] button'))
    css(f'#mem-detail .memory[data-id="{seeded["fact"]}"] button').click()
    wait.until(lambda _: all_css("#ret-chart path.curve"))
    assert css("#ret-id").get_attribute("value") == seeded["fact"]
    assert int(css("#ret-chart path.curve").get_attribute("data-points")) >= 50
    wait.until(lambda _: all_css("#policy-table tr"))
    assert {r.get_attribute("data-field") for r in all_css("#policy-table tr")} >= {"tau0_days", "summary_threshold"}
    assert {ln.get_attribute("data-threshold") for ln in all_css("#ret-chart line.threshold")} == {
        "summary", "gist", "archived"}
    assert "Dana lives in Lyon." in css("#ret-info").text
    shot("retention")

    # -- jobs: status, attempts, error ----------------------------------------------------------
    tab("jobs")
    wait.until(lambda _: len(all_css("#jobs-table tr.job-row")) >= 2)
    rows = {r.get_attribute("data-id"): r for r in all_css("#jobs-table tr.job-row")}
    ok_id, bad_id, _ = seeded["jobs"]
    assert rows[ok_id].get_attribute("data-status") == "queued"
    assert rows[bad_id].get_attribute("data-status") == "failed"
    assert "not valid JSON" in rows[bad_id].find_element(By.CSS_SELECTOR, "td.error-cell").get_attribute("title")
    assert rows[bad_id].find_elements(By.TAG_NAME, "td")[3].text == "1"
    # A result is readable: a one-line summary in the row, and all of it, pretty-printed, one click away.
    done_id = seeded["jobs"][2]
    css(f'#jobs-table tr.job-row[data-id="{done_id}"] button.expand').click()
    wait.until(lambda _: all_css(f'#jobs-table tr.job-detail[data-id="{done_id}"] pre.json'))
    pre = css(f'#jobs-table tr.job-detail[data-id="{done_id}"] pre.json')
    assert pre.is_displayed()
    assert json.loads(pre.get_attribute("textContent")) == BIG_RESULT  # whole, not cut
    assert len(pre.get_attribute("textContent").splitlines()) > 40  # indented, one value a line
    assert d.execute_script("const r = arguments[0].getBoundingClientRect(); "
                            "return r.right <= document.documentElement.clientWidth", pre)
    shot("jobs")
    # It stays open across the auto-refresh (every 5 s).
    refreshed = css("#jobs-updated").text
    wait.until(lambda _: css("#jobs-updated").text != refreshed)
    assert css(f'#jobs-table tr.job-detail[data-id="{done_id}"] pre.json').is_displayed()
    # Auto-refresh: a job that starts running shows up as running without a click.
    from memsvc import jobs
    from memsvc.db import session_scope

    with session_scope(engine) as session:
        assert jobs.mark_running(session, uuid.UUID(ok_id)) is not None
    wait.until(lambda _: css(f'#jobs-table tr.job-row[data-id="{ok_id}"]').get_attribute("data-status") == "running")

    # -- context playground: the context, its token count <= budget, why each item is there ------
    tab("playground")
    css("#pg-query").send_keys("Where does Dana live?")
    css('#pg-form [name="user_id"]').send_keys("dana")
    budget = css("#pg-budget")
    budget.clear()
    budget.send_keys("60")
    css("#pg-run").click()
    wait.until(lambda _: css("#pg-summary").get_attribute("data-tokens"))
    tokens, shown_budget = (int(css("#pg-summary").get_attribute(f"data-{n}")) for n in ("tokens", "budget"))
    assert shown_budget == 60 and 0 < tokens <= 60
    assert "Dana lives in Lyon." in css("#pg-context").text
    items = {r.get_attribute("data-id"): r for r in all_css("#pg-items tr.pg-item")}
    assert seeded["fact"] in items
    assert items[seeded["fact"]].find_element(By.CSS_SELECTOR, "td.reason").text.strip()  # "why was this retrieved"
    preview = items[seeded["fact"]].find_element(By.CSS_SELECTOR, "td.preview")
    wait.until(lambda _: "Dana lives in Lyon." in preview.text)  # what the memory is, not only its id
    # What did not fit is listed with a reason.
    for row in all_css("#pg-leftout tr.pg-left"):
        assert row.find_element(By.CSS_SELECTOR, "td.reason").text.strip()
    shot("playground")
    # Bad input is a readable error on the page, not a blank screen.
    css("#pg-query").clear()
    css("#pg-run").click()
    wait.until(lambda _: css("#banner").is_displayed())
    assert "non-empty query" in css("#banner").text

    # -- nothing came from another host, and the page logged no errors ----------------------------
    origins = d.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)")
    assert set(origins) <= {server.url}, origins
    # The one expected failure is the 422 above, which Chromium logs as a failed resource.
    errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE" and "/v1/context" not in e["message"]]
    assert not errors, errors


def _assert_first_run_hint(d) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    hint = d.find_element(By.CSS_SELECTOR, "#first-run")
    assert hint.is_displayed()
    text = hint.text
    for needle in ("admin_key.txt", "memsvc serve", "MEMSVC_ADMIN_KEY", "memsvc keys create", "Connect"):
        assert needle in text, (needle, text)


def _assert_retention_column_visible(d) -> None:  # type: ignore[no-untyped-def]
    """Every Retention cell of the memories table is on screen and on top (not under the detail pane)."""
    width = d.execute_script("return window.innerWidth")  # the page itself is narrower by its scrollbar
    assert width == 1400, width
    problems = d.execute_script("""
        const table = document.querySelector('#mem-table');
        const detail = document.querySelector('#mem-detail').getBoundingClientRect();
        const th = [...table.tHead.rows[0].cells].find((c) => c.textContent.trim() === 'Retention');
        const cells = [th, ...[...table.tBodies[0].rows].slice(0, 5).map((r) => r.cells[th.cellIndex])];
        const out = [];
        for (const cell of cells) {
          cell.scrollIntoView({block: 'center'});
          const r = cell.getBoundingClientRect();
          const x = r.left + Math.min(r.width / 2, 20), y = r.top + r.height / 2;
          const top = document.elementFromPoint(x, y);
          if (r.right > detail.left + 1 || r.right > document.documentElement.clientWidth || !cell.contains(top))
            out.push({text: cell.textContent, right: r.right, detailLeft: detail.left,
                      onTop: top && top.outerHTML.slice(0, 80)});
        }
        return out;""")
    assert problems == [], problems


def test_dashboard_rejects_a_bad_key(browser, server):  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server.url + "/dashboard#memories")
    WebDriverWait(browser, WAIT_S).until(lambda d: d.execute_script("return document.body.dataset.ready") == "true")
    browser.execute_script("sessionStorage.clear()")
    browser.find_element(By.CSS_SELECTOR, "#key-input").clear()
    browser.find_element(By.CSS_SELECTOR, "#key-input").send_keys("msk_not_a_real_key")
    browser.find_element(By.CSS_SELECTOR, "#key-save").click()
    status = browser.find_element(By.CSS_SELECTOR, "#key-status")
    WebDriverWait(browser, WAIT_S).until(lambda _: "rejected" in status.text)
    assert "invalid API key" in status.text
    _assert_first_run_hint(browser)  # a rejected key: where a good one is
    browser.get_log("browser")  # drain: the 401 is logged by Chromium as a failed resource, as expected
