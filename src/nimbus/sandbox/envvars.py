"""Lambda's environment variables for an execution environment.

Three layers, as on Lambda: defaults the function may override (PATH, LANG, TZ, ...),
the function's own variables, and reserved ones it may not (handler, function name,
region, task root, ...; with JSON logs AWS_LAMBDA_LOG_FORMAT and AWS_LAMBDA_LOG_LEVEL).
``_X_AMZN_TRACE_ID`` is set per invocation by the runtime; ``AWS_XRAY_*`` only when
TracingConfig is Active (nimbus's X-Ray receiver, observe/xray_daemon.py).
"""

from __future__ import annotations

import time
import uuid

from nimbus.sandbox.spec import EnvironmentSpec

TASK_ROOT = "/var/task"
RUNTIME_DIR = "/var/runtime"


def log_group(spec: EnvironmentSpec) -> str:
    return spec.log_group or f"/aws/lambda/{spec.function_name}"


def log_stream(spec: EnvironmentSpec) -> str:
    return spec.log_stream or (
        f"{time.strftime('%Y/%m/%d', time.gmtime())}/[{spec.version}]{uuid.uuid4().hex}"
    )


def build(spec: EnvironmentSpec, *, python: tuple[int, int] | None, python_bin: str | None,
          task_root: str = TASK_ROOT, opt: str = "/opt") -> dict[str, str]:
    """The full environment of the runtime process."""
    lib = f"{python_bin.rsplit('/', 1)[0]}/lib:" if python_bin else ""
    path = "/usr/local/bin:/usr/bin/:/bin:/opt/bin"
    if python_bin:
        path = f"{python_bin}:{path}"
    defaults = {
        "PATH": path,
        "LD_LIBRARY_PATH": f"{lib}/lib64:/usr/lib64:{RUNTIME_DIR}:{RUNTIME_DIR}/lib:"
        f"{task_root}:{task_root}/lib:{opt}/lib",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
    }
    if python:
        site = f"{opt}/python/lib/python{python[0]}.{python[1]}/site-packages"
        defaults["PYTHONPATH"] = f"{task_root}:{site}:{opt}/python:{RUNTIME_DIR}"
    reserved = {
        "_HANDLER": spec.handler,
        "AWS_REGION": spec.region,
        "AWS_DEFAULT_REGION": spec.region,
        "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": spec.version,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": log_group(spec),
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream(spec),
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "LAMBDA_TASK_ROOT": task_root,
        "LAMBDA_RUNTIME_DIR": RUNTIME_DIR,
    }
    if python:
        reserved["AWS_EXECUTION_ENV"] = f"AWS_Lambda_python{python[0]}.{python[1]}"
    if spec.log_format == "JSON":
        # As Lambda: only with JSON logs, the level as configured (TRACE ... FATAL).
        reserved["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
        reserved["AWS_LAMBDA_LOG_LEVEL"] = spec.log_level or "INFO"
    if spec.xray_daemon:
        # As Lambda with active tracing: where the X-Ray SDK sends segments (UDP), and
        # what it does outside a traced context (log, never raise).
        host, _, port = spec.xray_daemon.rpartition(":")
        reserved["AWS_XRAY_DAEMON_ADDRESS"] = spec.xray_daemon
        reserved["_AWS_XRAY_DAEMON_ADDRESS"] = host
        reserved["_AWS_XRAY_DAEMON_PORT"] = port
        reserved["AWS_XRAY_CONTEXT_MISSING"] = "LOG_ERROR"
    user = {k: v for k, v in spec.environment.items() if k not in reserved}
    return {**defaults, **user, **reserved}
