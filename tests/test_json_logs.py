"""MEMSVC_LOG_FORMAT=json: every line a process writes to its log is one JSON object (time, level, logger, message;
request_id and route for what a request logged), uvicorn's lines included, and none holds memory content."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid

import httpx
from sqlalchemy import text

from memsvc.logformat import JsonFormatter, RequestInfo, current_request
from tests.fixtures import ROOT_KEY, auth


def test_the_formatter_names_the_request_and_keeps_a_traceback_on_one_line() -> None:
    record = logging.getLogger("memsvc.test").makeRecord(
        "memsvc.test", logging.ERROR, __file__, 1, "failed for %s", ("tenant-7",), None)
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    token = current_request.set(RequestInfo("req-1", lambda: "/v1/memories/{memory_id}"))
    try:
        line = JsonFormatter().format(record)
    finally:
        current_request.reset(token)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "memsvc.test" and entry["message"] == "failed for tenant-7"
    assert entry["request_id"] == "req-1" and entry["route"] == "/v1/memories/{memory_id}"
    assert "ValueError: boom" in entry["exc_info"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
    assert "request_id" not in json.loads(JsonFormatter().format(record))  # outside a request: no request fields


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_served_process_logs_json_lines_without_memory_content(tmp_path, database_url, engine) -> None:  # type: ignore[no-untyped-def]
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMSVC_")}
    env.update(MEMSVC_DATABASE_URL=database_url, MEMSVC_STATE_DIR=str(tmp_path), MEMSVC_LOG_FORMAT="json",
               MEMSVC_EMBEDDING_QUERY_RUNTIME="torch", HF_HUB_OFFLINE="1")
    log = tmp_path / "stderr.log"
    # -v: uvicorn's own lines and the access log too, all through the same formatter.
    proc = subprocess.Popen([sys.executable, "-m", "memsvc.cli", "serve", "--no-workers", "--port", str(port), "-v"],
                            env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"), start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    content = f"okapi-{uuid.uuid4().hex} hides the spare key under the third flowerpot"
    constraint = f"test_refuse_{uuid.uuid4().hex[:8]}"
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        headers = {**auth(ROOT_KEY), "X-Request-ID": "json-log-test-1"}
        with engine.begin() as conn:  # a write Postgres refuses: its error quotes the row (content included)
            conn.execute(text(f"ALTER TABLE memories ADD CONSTRAINT {constraint} "
                              f"CHECK (content NOT LIKE '%{content[:38]}%') NOT VALID"))
        try:
            refused = httpx.post(base + "/v1/memories", headers=headers, json={"content": content}, timeout=120)
        finally:
            with engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE memories DROP CONSTRAINT {constraint}"))
        assert refused.status_code >= 500, refused.text
        listed = httpx.get(base + "/v1/memories", params={"user_id": content[:38]}, headers=headers, timeout=60)
        assert listed.status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line: one JSON object
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry), entry
    assert content[:38] not in log.read_text() and "flowerpot" not in log.read_text()
    mine = [e for e in entries if e.get("request_id") == "json-log-test-1"]
    assert any(e["logger"] == "uvicorn.access" and e.get("route") == "/v1/memories" for e in mine), mine
    failure = next(e for e in mine if "exc_info" in e)  # the refused write, with its traceback (redacted)
    assert constraint in failure["exc_info"] and failure["route"] == "/v1/memories"
