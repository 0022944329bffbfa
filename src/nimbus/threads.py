"""Blocking work (sqlite, zip, fork, file I/O) runs in worker threads, never on the
event loop: ``await blocking(fn, *args)``."""

from starlette.concurrency import run_in_threadpool as blocking

__all__ = ["blocking"]
