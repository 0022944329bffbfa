"""The deployment examples under deploy/ (docs/deployment.md), checked offline.

- Every Kubernetes manifest is valid for Kubernetes ``K8S_VERSION`` against the
  schemas kubernetes-validate ships (strict: unknown fields are errors), with the
  network shut off during validation; a manifest with a typo is refused (the check is
  not vacuous).
- Every ``NIMBUS_*`` variable the manifests, the systemd unit and its env files set is a
  setting of ``nimbus.config.Config``, and what they set together loads as a valid
  configuration once the placeholders are filled in, and is refused while they are not.
- The pieces refer to each other correctly: Secret keys, ConfigMap name, mount paths,
  ports, labels, the flags given to ``nimbus up``, the probe's ``/health`` endpoint.
- The systemd unit and its cluster drop-in parse and carry what nimbus needs (root,
  Delegate=yes, KillMode=mixed, ...); ``systemd-analyze verify`` also checks them where
  it is installed (skipped otherwise, failed in CI).
- Last, not offline: ``nimbus up --cluster`` started with the pod's settings (against
  the local PostgreSQL and NATS) answers the probes' ``/health`` unsigned, refuses
  unsigned API calls, accepts the Secret's keys and stops cleanly on SIGTERM within the
  pod's grace period.
"""

from __future__ import annotations

import base64
import copy
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from nimbus.config import ENV_PREFIX, Config, ConfigError, load_config

try:
    import kubernetes_validate
except ImportError:  # skipped locally, failed in CI (tests/conftest.py's rule)
    if os.environ.get("CI"):
        raise
    pytest.skip("kubernetes-validate is not installed (pip install -e .[test])",
                allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
SYSTEMD = ROOT / "deploy" / "systemd"
# A fixed version, so that the verdict does not move with the newest schemas a
# kubernetes-validate release ships; the manifests use nothing 1.30 lacks.
K8S_VERSION = "1.30.0"
# Read by load_config itself, not a Config field.
NOT_FIELDS = {"NIMBUS_CONFIG"}
PLACEHOLDER = re.compile(r"^<fill in[^>]*>$")


def _documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                found.append((path.name, doc))
    return found


DOCUMENTS = _documents()


def _one(kind: str) -> dict[str, Any]:
    matches = [doc for _, doc in DOCUMENTS if doc["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind} in {KUBERNETES}, found {len(matches)}"
    return matches[0]


def _container() -> dict[str, Any]:
    containers = _one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to resolve a name or open a socket fails the test: validation must
    use the schemas installed with kubernetes-validate, nothing fetched."""

    def refuse(*args: object, **kwargs: object) -> Any:
        raise AssertionError(f"network access during validation: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def _validate(doc: dict[str, Any]) -> str:
    try:
        version: str = kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {where}: {exc.message}")
    except IndexError:  # utils.validate: no schema at or below the version asked for
        pytest.fail(f"this kubernetes-validate ships no schemas for Kubernetes {K8S_VERSION}")
    return version


# --- Kubernetes schemas ---------------------------------------------------------------


def test_the_expected_manifests_are_there() -> None:
    kinds = sorted(doc["kind"] for _, doc in DOCUMENTS)
    assert kinds == ["ConfigMap", "Deployment", "Namespace", "PodDisruptionBudget", "Secret",
                     "Service"]


@pytest.mark.parametrize(
    "doc", [doc for _, doc in DOCUMENTS], ids=[f"{name}:{doc['kind']}" for name, doc in DOCUMENTS]
)
def test_manifest_is_valid_for_the_kubernetes_version(
        doc: dict[str, Any], no_network: None) -> None:
    assert _validate(doc) == ".".join(K8S_VERSION.split(".")[:2])
    if doc["kind"] != "Namespace":
        assert doc["metadata"]["namespace"] == _one("Namespace")["metadata"]["name"]


@pytest.mark.parametrize("mistake", ["misspelt field", "wrong type"])
def test_a_broken_manifest_is_refused(mistake: str, no_network: None) -> None:
    doc = copy.deepcopy(_one("Deployment"))
    container = doc["spec"]["template"]["spec"]["containers"][0]
    if mistake == "misspelt field":
        container["readinesProbe"] = container.pop("readinessProbe")
    else:
        container["ports"][0]["containerPort"] = "9000"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


# --- NIMBUS_* settings ----------------------------------------------------------------


def _env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a systemd EnvironmentFile (no quoting is used in ours)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
            values[key] = value
    return values


def _commented_settings(path: Path) -> set[str]:
    """NIMBUS_ names in commented-out KEY= lines: suggestions must be real too."""
    return set(re.findall(r"^#\s*(NIMBUS_[A-Z0-9_]+)=", path.read_text(), re.MULTILINE))


def _every_nimbus_variable() -> dict[str, set[str]]:
    """Variable name -> where it is set."""
    seen: dict[str, set[str]] = {}

    def add(name: str, where: str) -> None:
        if name.startswith(ENV_PREFIX):
            seen.setdefault(name, set()).add(where)

    for name in _one("ConfigMap")["data"]:
        add(name, "configmap.yaml")
    for entry in _container().get("env", []):
        add(entry["name"], "deployment.yaml")
    for path in SYSTEMD.glob("*.env"):
        for name in [*_env_file(path), *_commented_settings(path)]:
            add(name, path.name)
    for path in [SYSTEMD / "nimbus.service", *SYSTEMD.glob("nimbus.service.d/*.conf")]:
        for value in _unit(path).get("Service", {}).get("Environment", []):
            add(value.split("=", 1)[0], path.name)
    return seen


def test_every_nimbus_variable_is_a_setting() -> None:
    seen = _every_nimbus_variable()
    assert seen, "no NIMBUS_* variables found: the parsing above is broken"
    fields = {ENV_PREFIX + name.upper() for name in Config.model_fields} | NOT_FIELDS
    unknown = {name: sorted(where) for name, where in seen.items() if name not in fields}
    assert not unknown, f"not settings of nimbus.config.Config: {unknown}"


def _filled(values: dict[str, str]) -> dict[str, str]:
    """``values`` with every placeholder replaced by a usable test value."""
    filled = {}
    for key, value in values.items():
        if PLACEHOLDER.match(value):
            value = {"NIMBUS_ACCESS_KEY_ID": "AKIATESTTESTTEST0000"}.get(key, "test-secret")
        filled[key] = value
    return filled


def _load(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, **flags: Any) -> Config:
    """What ``nimbus up`` would load from exactly this environment and these flags."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_config(**flags)


def _kubernetes_env(secret: dict[str, str]) -> dict[str, str]:
    """The container's environment: the ConfigMap, then its Secret references."""
    env = dict(_one("ConfigMap")["data"])
    for entry in _container()["env"]:
        ref = entry["valueFrom"]["secretKeyRef"]
        assert ref["name"] == _one("Secret")["metadata"]["name"]
        env[entry["name"]] = secret[ref["key"]]
    return env


def _flags(command: list[str]) -> dict[str, Any]:
    """The Config flags a ``nimbus up`` command line sets (only boolean flags are used)."""
    flags = {}
    for arg in _nimbus_up(command)[2:]:
        assert arg.startswith("--") and "=" not in arg, f"unexpected argument {arg!r}"
        flags[arg[2:].replace("-", "_")] = True
    return flags


def test_the_flags_given_to_nimbus_up_exist() -> None:
    from typer.testing import CliRunner

    from nimbus.cli import app

    usage = CliRunner().invoke(app, ["up", "--help"], terminal_width=200).output
    commands = [_container()["command"], _exec_start(SYSTEMD / "nimbus.service"),
                _exec_start(SYSTEMD / "nimbus.service.d" / "cluster.conf")]
    for command in commands:
        for flag in _flags(command):
            assert f"--{flag.replace('_', '-')}" in usage, f"nimbus up has no --{flag}"


def test_kubernetes_settings_load_once_the_secret_is_filled_in(
        monkeypatch: pytest.MonkeyPatch) -> None:
    secret = _one("Secret")["stringData"]
    flags = _flags(_container()["command"])
    config = _load(_kubernetes_env(_filled(secret)), monkeypatch, **flags)
    assert config.cluster and config.api_auth == "sigv4"
    assert config.host == "0.0.0.0" and config.unprotected_bind() is None
    assert config.database_url and config.database_url.startswith("postgresql://")
    assert ":" not in config.database_url.split("://", 1)[1].split("@", 1)[0], (
        "the database password belongs in the Secret (PGPASSWORD), not in the URL"
    )


def test_the_secret_as_shipped_is_refused(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from nimbus.store.env_cipher import EnvCipher

    secret = _one("Secret")["stringData"]
    assert all(PLACEHOLDER.match(value) for value in secret.values()), (
        "the Secret must ship placeholders only, never usable keys"
    )
    with pytest.raises(ConfigError, match="access_key_id"):
        _load(_kubernetes_env(secret), monkeypatch)
    key_file = tmp_path / "env.key"
    key_file.write_text(secret["env.key"])
    filled = _load(_kubernetes_env(_filled(secret)), monkeypatch)
    with pytest.raises(ConfigError, match="32 random bytes"):
        EnvCipher.load(filled.model_copy(update={"env_key_file": key_file}))


def test_the_pod_is_wired_to_its_config_secret_and_volumes() -> None:
    deployment, config_map, secret = _one("Deployment"), _one("ConfigMap"), _one("Secret")
    pod = deployment["spec"]["template"]["spec"]
    container = _container()
    assert container["envFrom"] == [{"configMapRef": {"name": config_map["metadata"]["name"]}}]
    env = config_map["data"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts) == set(volumes)
    # The data dir is the pod's disk-backed volume (loop images live there).
    data = next(name for name, path in mounts.items() if path == env["NIMBUS_DATA_DIR"])
    assert volumes[data]["emptyDir"].get("medium") != "Memory"
    # The env key is the Secret's env.key, mounted where NIMBUS_ENV_KEY_FILE says.
    secret_volume = next(v for v in volumes.values() if "secret" in v)["secret"]
    assert secret_volume["secretName"] == secret["metadata"]["name"]
    (item,) = secret_volume["items"]
    assert item["key"] in secret["stringData"]
    secret_mount = mounts[next(n for n, v in volumes.items() if "secret" in v)]
    assert env["NIMBUS_ENV_KEY_FILE"] == f"{secret_mount}/{item['path']}"
    assert secret_volume["defaultMode"] & 0o077 == 0, "the key file must be private"
    # Sandboxes need a privileged root container; no service account token inside.
    assert container["securityContext"]["privileged"] is True
    assert container["securityContext"].get("runAsUser", 0) == 0
    assert pod["automountServiceAccountToken"] is False


def test_ports_labels_and_probes_match() -> None:
    from nimbus.api.auth import OPEN_PATHS
    from nimbus.server.app import create_app

    deployment, service, budget = _one("Deployment"), _one("Service"), _one("PodDisruptionBudget")
    container = _container()
    (port,) = container["ports"]
    assert port["containerPort"] == int(_one("ConfigMap")["data"]["NIMBUS_PORT"])
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (service["spec"]["selector"], budget["spec"]["selector"]["matchLabels"],
                     deployment["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    # The HTTP probes ask a path nimbus serves, and serves without a signature.
    config = Config(data_dir=Path("/nonexistent"), api_auth="none")
    routes = {getattr(r, "path", None) for r in create_app(config).app.routes}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        http = container[probe].get("httpGet")
        if http is not None:
            assert http["port"] == port["name"]
            assert http["path"] in routes and http["path"] in OPEN_PATHS


def test_systemd_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    single = _env_file(SYSTEMD / "nimbus.env")
    unit_env = dict(v.split("=", 1) for v in _unit(SYSTEMD / "nimbus.service")["Service"]
                    .get("Environment", []))
    config = _load({**single, **unit_env}, monkeypatch)
    assert config.unprotected_bind() is None and not config.cluster
    assert str(config.data_dir) == "/var/lib/nimbus"

    cluster = _env_file(SYSTEMD / "cluster.env")
    flags = _flags(_exec_start(SYSTEMD / "nimbus.service.d" / "cluster.conf"))
    with pytest.raises(ConfigError, match="access_key_id"):
        _load({**single, **unit_env, **cluster}, monkeypatch, **flags)
    filled = _load({**single, **unit_env, **_filled(cluster)}, monkeypatch, **flags)
    assert filled.cluster and filled.env_key_file is not None
    assert filled.unprotected_bind() is None


# --- systemd --------------------------------------------------------------------------


def _unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file's sections and settings; a key may repeat (systemd appends, and an
    empty value resets the list). Fails on anything that is not systemd's syntax."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        assert not line.endswith("\\"), f"{path.name}:{number}: continuation lines unused"
        section = re.fullmatch(r"\[([A-Za-z]+)\]", line)
        if section:
            current = sections.setdefault(section.group(1), {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"{path.name}:{number}: not a setting: {raw!r}"
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", key.strip()), f"{path.name}:{number}"
        values = current.setdefault(key.strip(), [])
        if value.strip():
            values.append(value.strip())
        else:
            values.clear()
    return sections


def _exec_start(path: Path) -> list[str]:
    (command,) = _unit(path)["Service"]["ExecStart"]
    return command.split()


def _nimbus_up(command: list[str]) -> list[str]:
    assert Path(command[0]).name == "nimbus" and command[1] == "up", command
    return command


def test_the_unit_carries_what_nimbus_needs() -> None:
    from nimbus.cli.client import USAGE
    from nimbus.workers.supervisor import STOP_TIMEOUT_S

    unit = _unit(SYSTEMD / "nimbus.service")
    assert set(unit) == {"Unit", "Service", "Install"}
    service = unit["Service"]
    one = {key: values[-1] for key, values in service.items() if values}
    assert one["User"] == "root"  # namespaces, cgroups, loop devices, nftables
    assert one["Delegate"] == "yes"  # nimbus nests its cgroups under the unit's
    assert one["KillMode"] == "mixed"  # SIGTERM to nimbus only; SIGKILL for leftovers
    assert one["Restart"] == "on-failure"
    # A refused configuration exits with USAGE: restarting cannot help.
    assert one["RestartPreventExitStatus"] == str(USAGE)
    assert one["TasksMax"] == "infinity"
    # Graceful HTTP shutdown (10 s in server/app.py), then the async workers.
    assert int(one["TimeoutStopSec"]) > 10 + STOP_TIMEOUT_S
    assert service["EnvironmentFile"] == ["/etc/nimbus/nimbus.env"]
    assert _nimbus_up(_exec_start(SYSTEMD / "nimbus.service")) == ["/opt/nimbus/bin/nimbus",
                                                                  "up"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_the_cluster_drop_in_replaces_the_command() -> None:
    drop_in = _unit(SYSTEMD / "nimbus.service.d" / "cluster.conf")["Service"]
    assert drop_in["ExecStart"] == ["/opt/nimbus/bin/nimbus up --cluster"]  # reset, then set
    assert "ExecStart=\n" in (SYSTEMD / "nimbus.service.d" / "cluster.conf").read_text()
    assert drop_in["EnvironmentFile"] == ["/etc/nimbus/cluster.env"]
    cluster = _env_file(SYSTEMD / "cluster.env")
    for shared in ("NIMBUS_DATABASE_URL", "NIMBUS_QUEUE_URL", "NIMBUS_ENV_KEY_FILE",
                   "NIMBUS_ACCESS_KEY_ID", "NIMBUS_SECRET_ACCESS_KEY"):
        assert shared in cluster, f"cluster.env must set {shared}, the same on every server"


def _unit_dir() -> Path | None:
    for candidate in ("/usr/lib/systemd/system", "/lib/systemd/system"):
        if Path(candidate, "sysinit.target").is_file():
            return Path(candidate)
    return None


@pytest.fixture
def unit_root(tmp_path: Path) -> Iterator[Path]:
    """A file system root holding the unit, its drop-in, a stand-in for the nimbus
    executable and the host's own targets (the unit's dependencies)."""
    from tests.conftest import unavailable

    if shutil.which("systemd-analyze") is None:
        unavailable("systemd-analyze is not installed (Debian: apt-get install systemd)")
    host_units = _unit_dir()
    if host_units is None:
        unavailable("no systemd unit directory with sysinit.target on this host")
    assert host_units is not None
    units = tmp_path / "etc" / "systemd" / "system"
    shutil.copytree(SYSTEMD / "nimbus.service.d", units / "nimbus.service.d")
    shutil.copy(SYSTEMD / "nimbus.service", units)
    shutil.copytree(host_units, tmp_path / "usr" / "lib" / "systemd" / "system", symlinks=True)
    executable = tmp_path / "opt" / "nimbus" / "bin" / "nimbus"
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\n")
    executable.chmod(stat.S_IRWXU)
    yield tmp_path


def test_systemd_analyze_verifies_the_unit_and_drop_in(unit_root: Path) -> None:
    out = subprocess.run(
        ["systemd-analyze", "verify", f"--root={unit_root}", "--man=no", "nimbus.service"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    # Unknown keys and bad values are warnings on stderr with exit status 0: any
    # output at all is a finding.
    assert out.returncode == 0 and not out.stderr.strip() and not out.stdout.strip(), (
        out.stdout + out.stderr
    )


def test_the_key_file_example_makes_a_valid_key() -> None:
    # cluster.env and secret.yaml tell the reader to make the key with this command.
    command = "import base64,os; print(base64.b64encode(os.urandom(32)).decode())"
    for path in (SYSTEMD / "cluster.env", KUBERNETES / "secret.yaml"):
        assert command in path.read_text()
    made = subprocess.run([sys.executable, "-c", command], capture_output=True, text=True,
                          check=True).stdout
    assert len(base64.b64decode(made.strip(), validate=True)) == 32


# --- a server started with the Kubernetes settings --------------------------------------


@pytest.mark.sandbox
@pytest.mark.postgres
@pytest.mark.broker("nats")
def test_a_server_with_the_pod_settings_serves_health_and_stops_in_time(tmp_path: Path) -> None:
    """The pod's environment (ConfigMap and filled-in Secret; the database, queue and key
    of a local installation instead of the cluster's) starts ``nimbus up --cluster`` on
    0.0.0.0 with SigV4; the probes' /health answers unsigned while the API refuses
    unsigned calls; SIGTERM stops it cleanly within the pod's grace period."""
    import boto3
    import httpx
    from botocore.config import Config as BotoConfig

    from tests.cluster.servers import shared_installation
    from tests.nimbus_process import NimbusProcess

    secret = _filled(_one("Secret")["stringData"])
    env = _kubernetes_env(secret)
    command = _container()["command"]
    with shared_installation(tmp_path / "shared") as shared:
        server = NimbusProcess(tmp_path / "data", env={**env, **shared}, args=command[2:])
        server.start()
        try:
            health = httpx.get(f"{server.endpoint}/health", timeout=30)
            assert health.status_code == 200 and health.json()["store"] == "postgresql"
            unsigned = httpx.get(f"{server.endpoint}/2015-03-31/functions/", timeout=30)
            assert unsigned.status_code == 403
            signed = boto3.client(
                "lambda", endpoint_url=server.endpoint, region_name=env["NIMBUS_REGION"],
                aws_access_key_id=env["NIMBUS_ACCESS_KEY_ID"],
                aws_secret_access_key=env["NIMBUS_SECRET_ACCESS_KEY"],
                config=BotoConfig(retries={"max_attempts": 0}),
            )
            assert signed.list_functions()["Functions"] == []
        finally:
            assert server.proc is not None
            server.proc.terminate()
            grace = _one("Deployment")["spec"]["template"]["spec"][
                "terminationGracePeriodSeconds"]
            code = server.proc.wait(timeout=grace)
    # uvicorn re-raises the SIGTERM once its shutdown is complete: the exit status says
    # "terminated by SIGTERM", which systemd counts as a clean stop (no restart).
    assert code in (0, -signal.SIGTERM), "".join(server.output)
    assert "Application shutdown complete." in "".join(server.output)
