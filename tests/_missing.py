"""Subprocesses in which some packages are missing, as if they were not installed.

:func:`env_without` writes a ``sitecustomize.py`` that puts a finder first on ``sys.meta_path``:
importing a blocked package, or any module in it, raises ``ModuleNotFoundError: No module named
'<name>'`` with ``name`` set, exactly as for a package that is not there. Python imports
``sitecustomize`` at startup from the first directory of ``sys.path`` that has one, so the
directory goes first on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
from pathlib import Path

_SITECUSTOMIZE = '''\
import sys

_BLOCKED = frozenset({blocked!r})


class _NotInstalled:
    """Finds every module of the blocked packages: as missing."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in _BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled)
'''


def env_without(directory: Path, *packages: str) -> dict[str, str]:
    """The environment of a subprocess in which ``packages`` (top-level names) cannot be
    imported; the ``sitecustomize.py`` that blocks them is written in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(_SITECUSTOMIZE.format(blocked=sorted(packages)))
    path = os.environ.get("PYTHONPATH")
    python_path = str(directory) if not path else os.pathsep.join([str(directory), path])
    return {**os.environ, "PYTHONPATH": python_path, "PYTHONIOENCODING": "utf-8"}
