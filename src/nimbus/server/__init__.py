"""The ``nimbus up`` process: the ASGI app (control plane behind the front door), and
the node that owns the engine, the control plane's stores, the data plane and the async
workers."""

from nimbus.server.app import create_app, serve

__all__ = ["create_app", "serve"]
