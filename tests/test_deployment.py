"""docker-compose.yml parses, every service is healthchecked, and every memsvc command it runs is real."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from memsvc.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_deployment_shape():
    services = COMPOSE["services"]
    assert {"postgres", "redis", "api", "worker", "beat"} <= set(services)
    assert "pgvector" in services["postgres"]["image"]
    for name, service in services.items():
        if name != "migrate":  # a one-shot job, not a long-running service
            assert "healthcheck" in service, f"{name} has no healthcheck"


@pytest.mark.parametrize("name", sorted(n for n, s in COMPOSE["services"].items() if "build" in s))
def test_every_memsvc_command_parses(name):
    command = COMPOSE["services"][name]["command"]
    argv = command if isinstance(command, list) else shlex.split(command)
    assert argv[0] == "memsvc"
    args = build_parser().parse_args(argv[1:])  # exits (SystemExit) on an unknown subcommand or flag
    assert callable(args.func)
    env = COMPOSE["services"][name]["environment"]
    assert env["MEMSVC_DATABASE_URL"].startswith("postgresql") and env["MEMSVC_REDIS_URL"].startswith("redis://")


def test_dockerfile_default_command_parses():
    line = next(x for x in (ROOT / "Dockerfile").read_text().splitlines() if x.startswith("CMD"))
    argv = yaml.safe_load(line.removeprefix("CMD").strip())
    assert build_parser().parse_args(argv[1:]).func


def test_compose_api_healthcheck_targets_a_real_route(client):
    check = " ".join(COMPOSE["services"]["api"]["healthcheck"]["test"])
    path = check.split("8420", 1)[1].split("'", 1)[0]
    assert client.get(path).status_code == 200
