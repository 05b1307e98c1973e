"""The HTTP service of a pool: an ASGI app, Prometheus metrics and a dashboard.

Needs the ``[http]`` extra (``pip install 'trio-jobpool[http]'``): Starlette, prometheus_client
and Hypercorn. Without Starlette or prometheus_client, importing this package raises
:class:`ModuleNotFoundError` (an :class:`ImportError`) whose message names the missing package
and that command. See the HTTP service's page of the documentation.
"""

try:
    import prometheus_client as _prometheus_client  # noqa: F401
    import starlette as _starlette  # noqa: F401
except ModuleNotFoundError as exc:
    if exc.name not in ("prometheus_client", "starlette"):
        raise
    raise ModuleNotFoundError(
        f"trio_jobpool.http needs the [http] extra ({exc.name} is not installed): "
        "pip install 'trio-jobpool[http]'",
        name=exc.name,
    ) from None

from ._pool_app import PoolApp, create_pool_app
from .app import create_app
from .metrics import pool_registry

__all__ = ["PoolApp", "create_app", "create_pool_app", "pool_registry"]
