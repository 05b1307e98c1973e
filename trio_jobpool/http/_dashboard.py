"""The dashboard's page, served with the answers of its first round in it.

The page (``dashboard/index.html``) holds a JSON data block, ``<script id="first-round"
type="application/json">null</script>``. :func:`dashboard_page` puts in it what the page's
first round of polling would fetch, so the numbers and jobs show as soon as the page has
loaded, not one round trip later. A data block is not run, so the page's
``Content-Security-Policy`` (``script-src 'self'``) allows it.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Final

__all__ = ["FIRST_JOBS", "NEXT_DUE", "dashboard_bytes", "dashboard_page"]

FIRST_JOBS: Final = 25
"""How many jobs the page lists: its rounds ask for ``GET api/v1/jobs?limit=25``
(``JOBS_LIMIT`` in ``dashboard.js``)."""
NEXT_DUE: Final = 5
"""How many scheduled jobs the page lists, the next due first: its rounds ask for
``GET api/v1/jobs?status=scheduled&limit=5`` while the stats count any (``DUE_LIMIT`` in
``dashboard.js``)."""
_SLOT: Final = b'<script id="first-round" type="application/json">null</script>'
# In a JSON text, '<', '>' and '&' can only be inside strings, where their \u escapes mean
# the same: escaped, no job id or name can end the data block (``</script>``) or open a comment.
_ESCAPES: Final = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


@functools.cache
def dashboard_bytes(name: str) -> bytes:
    """The bytes of the dashboard's file ``name``, as shipped in the package."""
    return resources.files(__package__).joinpath("dashboard", name).read_bytes()


def dashboard_page(first_round: str) -> bytes:
    """``index.html`` with the JSON text ``first_round`` (an object with the keys ``info``,
    ``stats``, ``jobs``, ``scheduled``, ``schedules`` and ``limits``: the answers of
    ``pool/info``, ``pool/stats``, the ``jobs`` of ``GET api/v1/jobs?limit=25`` and of
    ``GET api/v1/jobs?status=scheduled&limit=5`` (``[]`` when the stats count no scheduled
    job), the ``schedules`` of ``GET api/v1/schedules``, and the answer of
    ``GET api/v1/limits``) in its data block."""
    page = dashboard_bytes("index.html")
    data = first_round.translate(_ESCAPES).encode()
    return page.replace(_SLOT, _SLOT.replace(b">null<", b">" + data + b"<"), 1)
