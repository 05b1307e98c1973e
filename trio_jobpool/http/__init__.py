"""The HTTP service of a pool: an ASGI app, Prometheus metrics and a dashboard.

Needs the ``[http]`` extra (``pip install 'trio-jobpool[http]'``): Starlette, prometheus_client
and Hypercorn. See docs/service.md.
"""

from ._pool_app import PoolApp, create_pool_app
from .app import create_app
from .metrics import pool_registry

__all__ = ["PoolApp", "create_app", "create_pool_app", "pool_registry"]
