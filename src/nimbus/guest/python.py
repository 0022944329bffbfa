"""The Python runtime loop, running as PID 1 of an execution environment.

It is the zygote's interpreter after fork and confinement: it takes Lambda's
environment, imports the handler once (the init phase, reported as Init Duration), then
serves invocations from the control socket one at a time, with Lambda's error shapes
(as awslambdaric builds them) and its logging format: text, or JSON records when Lambda's
AWS_LAMBDA_LOG_FORMAT says JSON (with AWS_LAMBDA_LOG_LEVEL as the root logger's level),
as awslambdaric reads them. After each invocation it flushes
stdout/stderr and writes the end marker into the log pipe before sending the result,
so the server can attribute every byte of output to the right invocation.

Runs on the function's Python (3.9+): standard library only, no syntax newer than 3.9.
"""

from __future__ import annotations

import datetime
import decimal
import fcntl
import importlib
import io
import json
import logging
import os
import random
import resource
import socket
import struct
import sys
import termios
import time
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any

from nimbus.guest import protocol, reaper, snapshot_restore_py
from nimbus.guest.context import LambdaContext, function_settings
from nimbus.guest.jail import CTL_FD, LOG_FD

_THIS_FILE = __file__


class Fault(Exception):
    """An error the runtime reports with its own type, e.g. Runtime.ImportModuleError."""

    def __init__(self, error_type: str, message: str, trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace or []


def make_error(message: str, error_type: str, trace: list[str], request_id: str | None) -> dict:
    return {
        "errorMessage": message or "",
        "errorType": error_type or "",
        "requestId": request_id or "",
        "stackTrace": trace or [],
    }


def _user_frames(tb: TracebackType | None) -> list[str]:
    frames = traceback.extract_tb(tb)
    for i, frame in enumerate(frames):
        if frame.filename != _THIS_FILE:
            return traceback.format_list(frames[i:])
    return []


def fault_from_exception(exc: BaseException, request_id: str | None) -> dict:
    return make_error(str(exc), type(exc).__name__, _user_frames(exc.__traceback__), request_id)


def log_error(error: dict) -> None:
    """The ``[ERROR]`` block awslambdaric writes to the function's log (with JSON logs,
    the error as one JSON record)."""
    if _JSON_LOGS:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())  # awslambdaric's: no ms
        sys.stdout.write(_ENCODER.encode({"timestamp": stamp, "level": "ERROR", **error}) + "\n")
        return
    line = "[ERROR]"
    if error.get("errorType"):
        line += " " + error["errorType"]
    if error.get("errorMessage"):
        line += (":" if error.get("errorType") else "") + " " + error["errorMessage"]
    lines = [line, "Traceback (most recent call last):"]
    for element in error.get("stackTrace") or []:
        lines.extend(element.splitlines())
    sys.stdout.write("\n".join(lines) + "\n")


def load_handler(handler: str) -> Callable[..., Any]:
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as e:
        raise Fault("Runtime.MalformedHandlerName", f"Bad handler '{handler}': {e}") from None
    try:
        if modname.split(".")[0] in sys.builtin_module_names:
            raise Fault("Runtime.BuiltInModuleConflict",
                        f"Cannot use built-in module {modname} as a handler module")
        module = importlib.import_module(modname.replace("/", "."))
    except ImportError as e:
        raise Fault("Runtime.ImportModuleError",
                    f"Unable to import module '{modname}': {e}") from None
    except SyntaxError as e:
        trace = [f'  File "{e.filename}" Line {e.lineno}\n    {e.text}']
        raise Fault("Runtime.UserCodeSyntaxError",
                    f"Syntax error in module '{modname}': {e}", trace) from None
    try:
        return getattr(module, fname)
    except AttributeError:
        raise Fault("Runtime.HandlerNotFound",
                    f"Handler '{fname}' missing on module '{modname}'") from None


class _Encoder(json.JSONEncoder):
    def default(self, o: object) -> object:
        if isinstance(o, decimal.Decimal):
            return int(o) if o == o.to_integral_value() else float(o)
        return super().default(o)


# Lambda's python3.12+ runtimes stopped escaping non-ASCII in responses.
_ENCODER = _Encoder(ensure_ascii=sys.version_info < (3, 12), allow_nan=True)


def to_json(result: object) -> bytes:
    if isinstance(result, bytes):
        return result
    try:
        return _ENCODER.encode(result).encode()
    except Exception as e:
        raise Fault("Runtime.MarshalError", f"Unable to marshal response: {e}") from None


class _RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = _RequestIdFilter.request_id
        return True


# LogRecord attributes that are not "extra" fields of a JSON record (awslambdaric's).
_RESERVED_FIELDS = frozenset({
    "name", "msg", "args", "levelname", "levelno", "pathname", "filename", "module",
    "exc_info", "exc_text", "stack_info", "lineno", "funcName", "created", "msecs",
    "relativeCreated", "thread", "threadName", "processName", "process", "aws_request_id",
    "tenant_id", "_frame_type",
})
_encode_record = json.JSONEncoder(ensure_ascii=False).encode
_UTC = datetime.timezone.utc  # noqa: UP017 (datetime.UTC is 3.11+; this runs on 3.9+)


class JsonFormatter(logging.Formatter):
    """A record as the JSON object Lambda's Python runtime writes: timestamp, level,
    message, logger, the exception's stackTrace/errorType/errorMessage/location, requestId,
    then the record's extra fields; None values left out."""

    def format(self, record: logging.LogRecord) -> str:
        record.levelno = min(50, max(0, record.levelno)) // 10 * 10
        record.levelname = logging.getLevelName(record.levelno)
        exc = record.exc_info if record.exc_info and record.exc_info[0] else None
        stamp = datetime.datetime.fromtimestamp(record.created, tz=_UTC)
        result: dict[str, Any] = {
            "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "stackTrace": traceback.format_tb(exc[2]) if exc else None,
            "errorType": exc[0].__name__ if exc else None,
            "errorMessage": str(exc[1]) if exc else None,
            "requestId": getattr(record, "aws_request_id", None),
            "location": f"{record.pathname}:{record.funcName}:{record.lineno}" if exc else None,
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED_FIELDS and key not in result:
                result[key] = value
        return _encode_record({k: v for k, v in result.items() if v is not None}) + "\n"


_HANDLER: list[logging.Handler] = []  # the root logger's handler, set up by the zygote
_JSON_LOGS = False


def setup_logging() -> None:
    """Lambda's root handler: ``[LEVEL]\\ttimestamp\\trequest-id\\tmessage``."""
    logging.Formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stdout)
    handler.terminator = ""
    handler.setFormatter(logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
        "%Y-%m-%dT%H:%M:%S",
    ))
    handler.addFilter(_RequestIdFilter())
    logging.getLogger().addHandler(handler)
    _HANDLER[:] = [handler]


def configure_logging(log_format: str | None, log_level: str | None) -> None:
    """Apply AWS_LAMBDA_LOG_FORMAT / AWS_LAMBDA_LOG_LEVEL as awslambdaric does: JSON
    records for format JSON, and a level it knows (TRACE meaning DEBUG) on the root
    logger."""
    global _JSON_LOGS
    if log_format and log_format.upper() == "JSON":
        _JSON_LOGS = True
        for handler in _HANDLER:
            handler.setFormatter(JsonFormatter())
    level = {None: "", "TRACE": "DEBUG"}.get(log_level, log_level or "").upper()
    if level in logging._nameToLevel:
        logging.getLogger().setLevel(level)


def _forget_nimbus_modules() -> None:
    # The runtime keeps its references; the function may have its own "nimbus".
    for name in _OWN_MODULES:
        sys.modules.pop(name, None)


_OWN_MODULES: list[str] = []


def prepare() -> None:
    """Zygote-time work shared by every environment of this runtime."""
    setup_logging()
    reaper.install()
    _OWN_MODULES[:] = [n for n in sys.modules if n == "nimbus" or n.startswith("nimbus.")]


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass


def _unread(fd: int) -> int:
    """Bytes in the pipe behind ``fd`` not read yet (-1 if it cannot tell)."""
    try:
        return _INT.unpack(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return -1


_INT = struct.Struct("i")


def warm_up(warm_dir: str) -> None:
    """In a stem cell: exercise what init will do (see ``jail.warm_up``) without its
    effects: environment updates, importing a module from a new directory through the
    whole import system, marshalling a result."""
    os.environ["_NIMBUS_WARM"] = "1"
    del os.environ["_NIMBUS_WARM"]
    sys.dont_write_bytecode = True
    sys.path.insert(0, warm_dir)
    try:
        handler = load_handler("_nimbus_warm_module.handler")
        to_json(handler({}, None))
    finally:
        sys.path.remove(warm_dir)
        sys.path_importer_cache.pop(warm_dir, None)
        sys.modules.pop("_nimbus_warm_module", None)
    json.loads(json.dumps({"t": "ready", "init_ms": 0.0, "stages": [["a", 1.0]]}))
    os.getcwd()
    sys.stdout.flush()


def listen_for_debugger(address: str | None) -> Callable[[], None] | None:
    """``nimbus dev --debug``: with NIMBUS_DEBUGPY=host:port (and debugpy on the path, from
    the layer nimbus dev attaches) debugpy listens there, in process; the environment's
    first invocation then waits for a client (VS Code's attach). Not in init: waiting for
    a person would run into the 10 s init limit."""
    if not address:
        return None
    host, _, port = address.rpartition(":")
    try:
        import debugpy

        debugpy.listen((host or "127.0.0.1", int(port)), in_process_debug_adapter=True)
    except Exception as e:  # no debugpy, a port in use: the function runs, undebugged
        print(f"nimbus: not debugging: debugpy cannot listen on {address}: {e!r}",
              file=sys.stderr)
        return None
    print(f"nimbus: debugpy listens on {address}; the first invocation waits for a client",
          file=sys.stderr)
    return debugpy.wait_for_client


def _out_of_the_way(fd: int) -> int:
    """Move the control socket from ``fd`` to the highest descriptor the limit allows
    (close-on-exec, as it was), so that code expecting fd 3 to be its own, or writing to
    a guessed low number, does not land on it. Not a wall: the function shares this
    process and can find the socket in /proc/self/fd; the server checks every frame
    (``nimbus.sandbox.frames``). Returns where it went (``fd`` if it cannot move)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    target = min(soft if soft != resource.RLIM_INFINITY else _HIGH_FD, _HIGH_FD) - 1
    if target <= fd:
        return fd
    try:
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, target)
    except OSError:  # that high is taken (the limit reached): stay
        return fd
    os.close(fd)
    return moved


_HIGH_FD = 1024  # Lambda's descriptor limit, and select()'s


class Runtime:
    def __init__(self, req: dict) -> None:
        self.req = req
        self.nonce = req["nonce"]
        self.seq = 0
        self.ctl = socket.socket(fileno=_out_of_the_way(CTL_FD))
        self.settings: tuple = ()
        self.debugger: Callable[[], None] | None = None  # nimbus dev --debug

    def end_log(self, unless_read: bool = False) -> bool:
        """End this phase's log; returns whether a marker was written. With
        ``unless_read``, an empty pipe (the server has read all of it) needs none."""
        _flush()
        self.seq += 1
        if unless_read and _unread(LOG_FD) == 0:
            return False
        os.write(LOG_FD, protocol.marker(self.nonce, self.seq))
        return True

    def report_init_error(self, error: dict, init_ms: float) -> None:
        payload = json.dumps(error).encode()
        if len(payload) > protocol.MAX_PAYLOAD:  # an exception with a huge message
            payload = protocol.too_large_error(len(payload), "Error payload")
        header = {"t": "init_error", "type": error["errorType"][:protocol.MAX_ERROR_TYPE],
                  "init_ms": init_ms}
        protocol.write_frame(self.ctl, header, payload)

    def init(self) -> Callable[..., Any] | None:
        req = self.req
        os.environ.clear()  # empty already: the zygote starts with no environment
        os.environ.update(req["env"])
        log_format = req["env"].get("AWS_LAMBDA_LOG_FORMAT")
        log_level = req["env"].get("AWS_LAMBDA_LOG_LEVEL")
        if log_format or log_level:
            configure_logging(log_format, log_level)
        task_root = req["task_root"]
        extra = [p for p in req["env"].get("PYTHONPATH", "").split(":") if p]
        head = [task_root] + [p for p in req["python_path"] if p != task_root]
        sys.path[:] = head + [p for p in extra if p not in head] + [
            p for p in sys.path if p not in head and p not in extra
        ]
        sys.argv = ["/var/runtime/bootstrap.py"]
        sys.dont_write_bytecode = True  # /var/task is read-only
        os.chdir(task_root)
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, io.TextIOWrapper):
                stream.reconfigure(line_buffering=True)
        _forget_nimbus_modules()
        # Lambda's runtime hooks module, importable by the function under its own name.
        sys.modules["snapshot_restore_py"] = snapshot_restore_py
        self.debugger = listen_for_debugger(req["env"].get("NIMBUS_DEBUGPY"))
        start = time.perf_counter()
        req["stages"].append(("runtime", start))
        error = None
        handler: Callable[..., Any] | None = None
        try:
            handler = load_handler(req["handler"])
            if req.get("snapstart"):
                # A SnapStart template: its hooks belong to the init phase.
                snapshot_restore_py.run_before_snapshot()
        except Fault as f:
            error = make_error(f.message, f.error_type, f.trace, None)
        except Exception as e:
            error = fault_from_exception(e, None)
        init_ms = (time.perf_counter() - start) * 1000
        if error is not None:
            log_error(error)
            self.end_log()
            self.report_init_error(error, init_ms)
            return None
        self.end_log()
        self.settings = function_settings()
        req["stages"].append(("init", time.perf_counter()))
        protocol.write_frame(self.ctl, {"t": "ready", "init_ms": init_ms,
                                        "stages": req["stages"]})
        return handler

    def restore(self, handler: Callable[..., Any]) -> Callable[..., Any] | None:
        """In an environment forked from a SnapStart template: its own variables, fresh
        random state, the after-restore hooks; reported as the restore phase."""
        req = self.req
        start = time.perf_counter()
        os.environ.update(req["env"])
        random.seed()  # os.register_at_fork did too (clone_process runs the hooks)
        error = None
        try:
            snapshot_restore_py.run_after_restore()
        except Exception as e:
            error = fault_from_exception(e, None)
        restore_ms = (time.perf_counter() - start) * 1000
        if error is not None:
            log_error(error)
            self.end_log()
            self.report_init_error(error, restore_ms)
            return None
        self.end_log()
        req["stages"].append(("restore", time.perf_counter()))
        protocol.write_frame(self.ctl, {"t": "ready", "init_ms": restore_ms, "restore": True,
                                        "stages": req["stages"]})
        return handler

    def invoke(
        self, handler: Callable[..., Any], header: dict, body: bytes
    ) -> tuple[str | None, bytes]:
        request_id = header["id"]
        _RequestIdFilter.request_id = request_id
        if header.get("trace"):
            os.environ["_X_AMZN_TRACE_ID"] = header["trace"]
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)
        wait_for_client, self.debugger = self.debugger, None
        if wait_for_client is not None:  # the environment's first invocation waits for it
            wait_for_client()
        error = None
        try:
            client_context = json.loads(header["cc"]) if header.get("cc") else None
            identity = json.loads(header["ci"]) if header.get("ci") else None
        except ValueError as e:
            error = make_error(f"Unable to parse Client Context JSON: {e}",
                               "Runtime.LambdaContextUnmarshalError", [], request_id)
        if error is None:
            try:
                context = LambdaContext(request_id, header["deadline"], header["arn"],
                                        client_context, identity, self.settings)
                try:
                    event = json.loads(body) if body.strip() else {}
                except ValueError as e:
                    raise Fault("Runtime.UnmarshalError",
                                f"Unable to unmarshal input: {e}") from None
                payload = to_json(handler(event, context))
                if len(payload) <= protocol.MAX_PAYLOAD:
                    return None, payload
                error = json.loads(protocol.too_large_error(len(payload)))
            except Fault as f:
                error = make_error(f.message, f.error_type, f.trace, request_id)
            except Exception as e:
                error = fault_from_exception(e, request_id)
        log_error(error)
        payload = json.dumps(error).encode()
        if len(payload) > protocol.MAX_PAYLOAD:  # an exception with a huge message
            payload = protocol.too_large_error(len(payload), "Error payload")
        return "Unhandled", payload

    def serve(self, handler: Callable[..., Any]) -> None:
        frames = protocol.FrameReader(self.ctl)  # from here on, only this loop reads ctl
        while True:
            try:
                header, body = frames.read()
            except (EOFError, ConnectionError):
                return
            function_error, payload = self.invoke(handler, header, body)
            reaper.reap()  # between invocations only: the handler may wait for its own
            # The tag says which invocation this answers: the server takes no other.
            result: dict[str, object] = {"t": "result", "error": function_error,
                                         "tag": header["tag"]}
            if not self.end_log(unless_read=True):
                result["marked"] = False  # one write and one wake-up less per invocation
            protocol.write_frame(self.ctl, result, payload)


def main(req: dict) -> None:
    runtime = Runtime(req)
    handler = runtime.init()
    if handler is not None:
        runtime.serve(handler)
    else:
        # Lambda's runtime exits after reporting an init error; so do we.
        _flush()
        os._exit(1)
