"""The web dashboard at ``/ui``: functions, their metrics, invocations, logs and traces,
the service map, queues and event sources, served by nimbus itself (``dashboard.py``)."""

from nimbus.ui.dashboard import dashboard_middleware

__all__ = ["dashboard_middleware"]
