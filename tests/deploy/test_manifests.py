"""The deployment examples under deploy/ (docs/deployment.md), checked offline.

- Every Kubernetes manifest is valid for Kubernetes ``K8S_VERSION`` against the
  schemas kubernetes-validate ships (strict: unknown fields are errors), with the
  network shut off during validation; a manifest with a typo is refused (the check is
  not vacuous).
- Every ``NIMBUS_*`` variable the manifests, the systemd unit and its env files set is a
  setting of ``nimbus.config.Config``, and what they set together loads as a valid
  configuration once the placeholders are filled in, and is refused while they are not.
- The pieces refer to each other correctly: Secret keys, ConfigMap name, mount paths,
  ports, labels, the flags given to ``nimbus up`` and ``nimbus worker``, the probe's
  ``/health`` endpoint; the workers' advertise URL is their pod IP and port, and the
  servers' Service, Deployment and disruption budget do not select workers.
- The systemd units (server, its cluster drop-in, worker) parse and carry what nimbus
  needs (root, Delegate=yes, KillMode=mixed, ...); ``systemd-analyze verify`` also
  checks them where it is installed (skipped otherwise, failed in CI).
- Last, not offline: ``nimbus up --cluster`` started with the pod's settings (against
  the local PostgreSQL and NATS) answers the probes' ``/health`` unsigned, refuses
  unsigned API calls, accepts the Secret's keys and stops cleanly on SIGTERM within the
  pod's grace period; and ``nimbus worker`` started with the worker pod's settings (its
  pod IP: 127.0.0.1) is listed by that server's ``/_nimbus/cluster``, runs what the
  server is asked to invoke (signed with the Secret's keys) and is withdrawn when it
  stops.
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
from collections import defaultdict
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
# The pods' kinds, and the manifest each is in.
POD_KINDS = {"Deployment": "deployment.yaml", "DaemonSet": "workers.yaml"}
# Every unit file, and the one a worker node runs.
WORKER_UNIT = SYSTEMD / "nimbus-worker.service"
UNITS = [SYSTEMD / "nimbus.service", *sorted(SYSTEMD.glob("nimbus.service.d/*.conf")),
         WORKER_UNIT]
# What a placeholder is filled in with by these tests, where "test-secret" would not do.
FILLED = {"NIMBUS_ACCESS_KEY_ID": "AKIATESTTESTTEST0000",
          "NIMBUS_ADVERTISE_URL": "http://192.0.2.21:9000"}
# The address the kubelet would give the worker pod's POD_IP (a documentation address).
POD_IP = "192.0.2.7"


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


def _container(kind: str = "Deployment") -> dict[str, Any]:
    """The one container of the servers' (Deployment) or the workers' (DaemonSet) pods."""
    containers = _one(kind)["spec"]["template"]["spec"]["containers"]
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
    assert kinds == ["ConfigMap", "DaemonSet", "Deployment", "Namespace", "PodDisruptionBudget",
                     "Secret", "Service"]


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
    for kind, where in POD_KINDS.items():
        for entry in _container(kind).get("env", []):
            add(entry["name"], where)
    for path in SYSTEMD.glob("*.env"):
        for name in [*_env_file(path), *_commented_settings(path)]:
            add(name, path.name)
    for path in UNITS:
        for value in _unit(path).get("Service", {}).get("Environment", []):
            add(value.split("=", 1)[0], path.name)
        for name in re.findall(r"\$\{(\w+)\}", " ".join(_exec_start(path))):
            add(name, path.name)
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
            value = FILLED.get(key, "test-secret")
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


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion of an env value: $(NAME) of a variable defined before it,
    $$ for a literal $; a reference to an unknown name stays as written."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
                  value)


def _kubernetes_env(secret: dict[str, str], kind: str = "Deployment",
                    pod_ip: str = POD_IP) -> dict[str, str]:
    """The container's environment as the kubelet makes it: the ConfigMap, then the env
    list in order (Secret references, the pod's IP, values expanded)."""
    env = dict(_one("ConfigMap")["data"])
    for entry in _container(kind)["env"]:
        if "value" in entry:
            env[entry["name"]] = _expand(entry["value"], env)
            continue
        source = entry["valueFrom"]
        if "fieldRef" in source:
            assert source["fieldRef"]["fieldPath"] == "status.podIP", source
            env[entry["name"]] = pod_ip
            continue
        ref = source["secretKeyRef"]
        assert ref["name"] == _one("Secret")["metadata"]["name"]
        env[entry["name"]] = secret[ref["key"]]
    return env


def _flags(command: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """The Config flags a ``nimbus up``/``nimbus worker`` command line sets: ``--name``
    alone is True, ``--name VALUE`` a value (systemd's ${NAME} taken from ``env``)."""
    args, flags = _nimbus(command)[2:], {}
    given = {} if env is None else env
    while args:
        arg = args.pop(0)
        assert arg.startswith("--") and "=" not in arg, f"unexpected argument {arg!r}"
        value: Any = True
        if args and not args[0].startswith("--"):
            value = re.sub(r"\$\{(\w+)\}", lambda m: given[m.group(1)], args.pop(0))
        flags[arg[2:].replace("-", "_")] = value
    return flags


def _worker_flags(command: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """What ``nimbus worker`` gives load_config: its flags, and a cluster node's role."""
    assert command[1] == "worker", command
    return {**_flags(command, env), "cluster": True, "role": "worker"}


@pytest.mark.parametrize("command", ["up", "worker"])
def test_the_flags_given_to_nimbus_exist(command: str) -> None:
    from typer.testing import CliRunner

    from nimbus.cli import app

    usage = CliRunner().invoke(app, [command, "--help"], terminal_width=200).output
    commands = [c for c in [_container()["command"], _container("DaemonSet")["command"],
                            *(_exec_start(path) for path in UNITS)] if c[1] == command]
    assert commands, f"nothing runs nimbus {command}"
    for line in commands:
        for flag in _flags(line, defaultdict(lambda: "x")):
            assert f"--{flag.replace('_', '-')}" in usage, f"nimbus {command} has no --{flag}"


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


def test_kubernetes_worker_settings_load_and_advertise_the_pod_ip(
        monkeypatch: pytest.MonkeyPatch) -> None:
    secret = _filled(_one("Secret")["stringData"])
    container = _container("DaemonSet")
    env = _kubernetes_env(secret, "DaemonSet")
    config = _load(env, monkeypatch, **_worker_flags(container["command"]))
    assert config.role == "worker" and config.cluster and config.api_auth == "sigv4"
    # The servers sign what they send the worker with the pair the worker checks.
    server = _load(_kubernetes_env(secret), monkeypatch, **_flags(_container()["command"]))
    assert (config.access_key_id, config.secret_access_key) == (
        server.access_key_id, server.secret_access_key)
    assert (config.database_url, config.queue_url, config.env_key_file) == (
        server.database_url, server.queue_url, server.env_key_file)
    # Reached at the pod's IP, on the port it listens on (0.0.0.0 is no address).
    (port,) = container["ports"]
    assert config.host == "0.0.0.0" and config.port == port["containerPort"]
    assert config.node_url == f"http://{POD_IP}:{config.port}"
    names = [entry["name"] for entry in container["env"]]
    assert names.index("POD_IP") < names.index("NIMBUS_ADVERTISE_URL"), (
        "the kubelet expands $(POD_IP) only from variables defined before it"
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


@pytest.mark.parametrize("kind", POD_KINDS)
def test_the_pod_is_wired_to_its_config_secret_and_volumes(kind: str) -> None:
    workload, config_map, secret = _one(kind), _one("ConfigMap"), _one("Secret")
    pod = workload["spec"]["template"]["spec"]
    container = _container(kind)
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
    # Servers and workers run the same nimbus, with the same Secret-given variables.
    assert container["image"] == _container()["image"]
    secret_refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]
                   if "secretKeyRef" in e.get("valueFrom", {})}
    assert secret_refs == {e["name"]: e["valueFrom"]["secretKeyRef"]
                           for e in _container()["env"]}


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
    workers = _one("DaemonSet")
    (worker_port,) = _container("DaemonSet")["ports"]
    assert worker_port == port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        for pod_container in (container, _container("DaemonSet")):
            http = pod_container[probe].get("httpGet")
            if http is not None:
                assert http["port"] == port["name"]
                assert http["path"] in routes and http["path"] in OPEN_PATHS
    # Workers are reached at their own address, never through the servers' Service, nor
    # counted by the servers' Deployment or disruption budget; and the other way round.
    worker_labels = workers["spec"]["template"]["metadata"]["labels"]
    for selector in (service["spec"]["selector"], budget["spec"]["selector"]["matchLabels"],
                     deployment["spec"]["selector"]["matchLabels"]):
        assert not selector.items() <= worker_labels.items(), selector
    assert workers["spec"]["selector"]["matchLabels"].items() <= worker_labels.items()
    assert not workers["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # One worker per machine: it announces the machine's memory as its own.
    assert workers["spec"]["updateStrategy"]["rollingUpdate"]["maxSurge"] == 0
    assert "hostNetwork" not in workers["spec"]["template"]["spec"]


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


def test_systemd_worker_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    service = _unit(WORKER_UNIT)["Service"]
    files = [Path(path) for path in service["EnvironmentFile"]]
    assert [path.name for path in files] == ["nimbus.env", "cluster.env", "worker.env"], (
        "later files win: the host's settings, the cluster's, then this node's"
    )
    unit_env = dict(v.split("=", 1) for v in service.get("Environment", []))
    env: dict[str, str] = {}
    for path in files:
        env.update(_env_file(SYSTEMD / path.name))
    env.update(unit_env)
    command = _exec_start(WORKER_UNIT)
    # As shipped (placeholders in cluster.env and worker.env): refused.
    with pytest.raises(ConfigError):
        _load(env, monkeypatch, **_worker_flags(command, env))
    filled = _filled(env)
    config = _load(filled, monkeypatch, **_worker_flags(command, filled))
    assert config.role == "worker" and config.cluster and config.unprotected_bind() is None
    assert config.node_url == FILLED["NIMBUS_ADVERTISE_URL"]
    assert config.port == int(_env_file(SYSTEMD / "nimbus.env")["NIMBUS_PORT"])
    server_dir = dict(v.split("=", 1) for v in _unit(SYSTEMD / "nimbus.service")["Service"]
                      ["Environment"])["NIMBUS_DATA_DIR"]
    assert str(config.data_dir) != server_dir, "a server on the same host keeps its own"


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


def _nimbus(command: list[str]) -> list[str]:
    assert Path(command[0]).name == "nimbus" and command[1] in ("up", "worker"), command
    return command


@pytest.mark.parametrize("name", ["nimbus.service", "nimbus-worker.service"])
def test_the_unit_carries_what_nimbus_needs(name: str) -> None:
    from nimbus.cli.client import USAGE
    from nimbus.workers.supervisor import STOP_TIMEOUT_S

    unit = _unit(SYSTEMD / name)
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
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert one["StateDirectoryMode"] == "0700"
    assert dict(v.split("=", 1) for v in service["Environment"])["NIMBUS_DATA_DIR"] == (
        f"/var/lib/{one['StateDirectory']}")
    if name == WORKER_UNIT.name:
        assert _exec_start(WORKER_UNIT) == ["/opt/nimbus/bin/nimbus", "worker",
                                            "--advertise-url", "${NIMBUS_ADVERTISE_URL}"]
        return
    assert service["EnvironmentFile"] == ["/etc/nimbus/nimbus.env"]
    assert _nimbus(_exec_start(SYSTEMD / "nimbus.service")) == ["/opt/nimbus/bin/nimbus", "up"]


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
    shutil.copy(WORKER_UNIT, units)
    shutil.copytree(host_units, tmp_path / "usr" / "lib" / "systemd" / "system", symlinks=True)
    executable = tmp_path / "opt" / "nimbus" / "bin" / "nimbus"
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\n")
    executable.chmod(stat.S_IRWXU)
    yield tmp_path


@pytest.mark.parametrize("name", ["nimbus.service", "nimbus-worker.service"])
def test_systemd_analyze_verifies_the_units(unit_root: Path, name: str) -> None:
    out = subprocess.run(
        ["systemd-analyze", "verify", f"--root={unit_root}", "--man=no", name],
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


@pytest.mark.sandbox
@pytest.mark.postgres
@pytest.mark.broker("nats")
def test_a_worker_with_the_worker_pod_settings_joins_the_server(tmp_path: Path) -> None:
    """``nimbus worker`` with the DaemonSet's environment (its pod IP: 127.0.0.1, and the
    free port it was given instead of 9000) next to a server with the Deployment's: the
    server lists it at its advertise URL in ``/_nimbus/cluster``, sends it the function
    it is asked to invoke (signed with the Secret's pair, which the worker checks), and
    drops it once it has stopped on SIGTERM, within the pod's grace period."""
    import time

    import boto3
    import httpx
    from botocore.config import Config as BotoConfig

    from nimbus.sigv4.credentials import Credentials
    from nimbus.sigv4.signing import httpx_auth
    from tests.cluster.servers import shared_installation
    from tests.conftest import ROLE, make_zip
    from tests.nimbus_process import NimbusProcess

    secret = _filled(_one("Secret")["stringData"])
    server_env = _kubernetes_env(secret)
    region = server_env["NIMBUS_REGION"]
    auth = httpx_auth(Credentials(secret["access-key-id"], secret["secret-access-key"]),
                      region=region)

    def nodes() -> list[dict[str, Any]]:
        answer = httpx.get(f"{server.endpoint}/_nimbus/cluster", auth=auth, timeout=30)
        assert answer.status_code == 200, answer.text
        found: list[dict[str, Any]] = answer.json()["Nodes"]
        return found

    def until(predicate: Any, what: str) -> list[dict[str, Any]]:
        # Announcements come every second: poll the server's view, with a deadline.
        deadline = time.monotonic() + 30
        while not predicate(found := nodes()):
            assert time.monotonic() < deadline, f"{what}: {found}"
            time.sleep(0.1)
        return found

    with shared_installation(tmp_path / "shared") as shared:
        server = NimbusProcess(tmp_path / "server", env={**server_env, **shared},
                               args=_container()["command"][2:])
        worker_command = _container("DaemonSet")["command"]
        worker = NimbusProcess(tmp_path / "worker", args=worker_command[2:])
        worker.command = worker_command[1]
        worker_env = _kubernetes_env(secret, "DaemonSet", pod_ip="127.0.0.1")
        advertised = worker_env["NIMBUS_ADVERTISE_URL"]
        assert advertised == f"http://127.0.0.1:{worker_env['NIMBUS_PORT']}"
        # The port the test could have: the manifest's 9000 may be taken on this host.
        advertised = f"http://127.0.0.1:{worker.port}"
        worker.env.update({**worker_env, **shared, "NIMBUS_ADVERTISE_URL": advertised})
        server.start()
        try:
            worker.start()
            (node,) = until(lambda found: len(found) == 1, "the worker announced")
            assert node["url"] == advertised
            lam = boto3.client(
                "lambda", endpoint_url=server.endpoint, region_name=region,
                aws_access_key_id=secret["access-key-id"],
                aws_secret_access_key=secret["secret-access-key"],
                config=BotoConfig(retries={"max_attempts": 0}, read_timeout=120),
            )
            lam.create_function(
                FunctionName="echo", Runtime="python3.12", Role=ROLE, Handler="app.handler",
                Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return e\n"})})
            lam.get_waiter("function_active_v2").wait(FunctionName="echo")
            answer = lam.invoke(FunctionName="echo", Payload=b'{"n": 1}')
            assert answer["StatusCode"] == 200 and "FunctionError" not in answer, answer
            assert answer["Payload"].read() == b'{"n": 1}'
            # It ran on the worker: its idle environment is announced there.
            until(lambda found: found and found[0]["warm"].get("echo:$LATEST"),
                  "the worker's warm environment announced")
            assert worker.proc is not None
            worker.proc.terminate()
            grace = _one("DaemonSet")["spec"]["template"]["spec"][
                "terminationGracePeriodSeconds"]
            code = worker.proc.wait(timeout=grace)
            assert code in (0, -signal.SIGTERM), "".join(worker.output)
            until(lambda found: found == [], "the stopped worker withdrawn")
        finally:
            worker.stop()
            server.stop()
