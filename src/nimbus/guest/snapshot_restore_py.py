"""Lambda's ``snapshot_restore_py`` module, as the Python runtime provides it to functions.

Functions (and Powertools) import it as ``snapshot_restore_py``: the Python runtime
(``nimbus.guest.python``) registers this module under that name before the handler
module is imported. Hooks are registered with their arguments, directly or as
decorators::

    from snapshot_restore_py import register_before_snapshot, register_after_restore

    @register_after_restore
    def reconnect():
        ...

    register_before_snapshot(flush_cache, "warm", force=True)

As on Lambda, before-snapshot hooks run once, after the handler module's init, in the
reverse order of registration; after-restore hooks run in each environment started from
the SnapStart template, in the order of registration. Without SnapStart they never run.

Runs on the function's Python (3.9+): standard library only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_Hook = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]
_before_snapshot_registry: list[_Hook] = []
_after_restore_registry: list[_Hook] = []


def register_before_snapshot(func: Callable[..., Any], *args: Any,
                             **kwargs: Any) -> Callable[..., Any]:
    """Run ``func(*args, **kwargs)`` once, before the initialised function is kept."""
    _before_snapshot_registry.append((func, args, kwargs))
    return func


def register_after_restore(func: Callable[..., Any], *args: Any,
                           **kwargs: Any) -> Callable[..., Any]:
    """Run ``func(*args, **kwargs)`` in every environment started from the snapshot."""
    _after_restore_registry.append((func, args, kwargs))
    return func


def get_before_snapshot() -> list[_Hook]:
    return _before_snapshot_registry


def get_after_restore() -> list[_Hook]:
    return _after_restore_registry


def run_before_snapshot() -> None:
    """The runtime's part: each hook once, last registered first."""
    while _before_snapshot_registry:
        func, args, kwargs = _before_snapshot_registry.pop()
        func(*args, **kwargs)


def run_after_restore() -> None:
    """The runtime's part, in a restored environment: each hook, first registered first."""
    while _after_restore_registry:
        func, args, kwargs = _after_restore_registry.pop(0)
        func(*args, **kwargs)
