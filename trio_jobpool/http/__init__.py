"""The HTTP service of a pool: an ASGI app, Prometheus metrics and a dashboard.

Needs the ``[http]`` extra (``pip install 'trio-jobpool[http]'``): Starlette, prometheus_client
and Hypercorn. See docs/service.md.
"""

from .app import create_app
from .metrics import pool_registry

__all__ = ["create_app", "pool_registry"]
