"""Configuration precedence: defaults < TOML file < NIMBUS_* env < flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from nimbus.config import ConfigError, load_config


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("NIMBUS_PORT", "NIMBUS_HOST", "NIMBUS_DATA_DIR", "NIMBUS_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    cfg = load_config()
    assert (cfg.host, cfg.port, cfg.region, cfg.account_id) == (
        "127.0.0.1",
        9000,
        "us-east-1",
        "000000000000",
    )
    assert cfg.data_dir == Path(".nimbus").absolute()
    assert cfg.effective_database_url.startswith("sqlite:///")
    assert cfg.function_arn("f", "1") == "arn:aws:lambda:us-east-1:000000000000:function:f:1"


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "nimbus.toml"
    file.write_text('port = 7000\nregion = "eu-west-1"\nhost = "0.0.0.0"\n')
    monkeypatch.setenv("NIMBUS_PORT", "7100")
    cfg = load_config(file, host="127.0.0.2")
    assert (cfg.port, cfg.region, cfg.host) == (7100, "eu-west-1", "127.0.0.2")


def test_bad_values_say_what_is_wrong(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIMBUS_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="port"):
        load_config()
    monkeypatch.delenv("NIMBUS_PORT")
    with pytest.raises(ConfigError, match="account_id"):
        load_config(account_id="123")
    bad = tmp_path / "bad.toml"
    bad.write_text("port = [")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(bad)
    with pytest.raises(ConfigError, match="isolation"):
        load_config(isolation="none")
    with pytest.raises(ConfigError, match="concurrency_limit"):  # beyond a scope's slots
        load_config(concurrency_limit=1_000_001)
    monkeypatch.setenv("NIMBUS_LOG_RETENTION_DAYS", "-1")
    with pytest.raises(ConfigError, match="log_retention_days"):
        load_config()


def test_cluster_mode_needs_a_shared_database_and_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NIMBUS_DATABASE_URL", "NIMBUS_QUEUE_URL", "NIMBUS_CLUSTER"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="NIMBUS_DATABASE_URL=postgresql"):
        load_config(cluster=True)
    with pytest.raises(ConfigError, match="NIMBUS_QUEUE_URL=nats"):
        load_config(cluster=True, database_url="postgresql://127.0.0.1/test")
    monkeypatch.setenv("NIMBUS_CLUSTER", "1")
    cfg = load_config(database_url="postgresql://127.0.0.1/test",
                      queue_url="nats://127.0.0.1:4222/S")
    assert cfg.cluster


def test_a_shared_port_is_for_the_servers_of_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NIMBUS_DATABASE_URL", "NIMBUS_QUEUE_URL", "NIMBUS_CLUSTER", "NIMBUS_ROLE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="add --cluster"):
        load_config(reuse_port=True)
    shared = {"database_url": "postgresql://127.0.0.1/test",
              "queue_url": "nats://127.0.0.1:4222/S", "cluster": True}
    assert load_config(reuse_port=True, **shared).reuse_port
    with pytest.raises(ConfigError, match="reuse_port is for servers"):
        load_config(reuse_port=True, role="worker", **shared)
