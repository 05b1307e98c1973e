"""The API reference page, ``/docs``: Swagger UI over the app's own ``/openapi.json``.

The page and its start-up script are files of this package (``reference/``); Swagger UI's own
files come from the installed ``swagger-ui-py`` package (a dependency of the ``[http]`` extra),
found without importing it and served with Starlette's ``StaticFiles``, only the two the page
uses. Nothing is loaded from another host: the page works on a machine without internet.
"""

from __future__ import annotations

import functools
import importlib.util
from importlib import resources
from pathlib import Path
from typing import Final

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

__all__ = [
    "SWAGGER_UI_FILES",
    "SWAGGER_UI_MISSING",
    "SwaggerUiFiles",
    "reference_file",
    "swagger_ui_directory",
]

SWAGGER_UI_FILES: Final = frozenset({"swagger-ui.css", "swagger-ui-bundle.js"})
"""The files of the ``swagger-ui-py`` package that ``/docs`` uses (served under
``/docs/swagger-ui/``); no other file of that package is served."""
SWAGGER_UI_MISSING: Final = (
    "the API reference needs the swagger-ui-py package, which ships Swagger UI: "
    "pip install 'trio-jobpool[http]'"
)
# The dashboard's policy: nothing from elsewhere, no inline script or style, no framing.
_POLICY: Final = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'"
)


def swagger_ui_directory() -> Path | None:
    """The directory of Swagger UI's files in the installed ``swagger-ui-py`` package (its
    ``swagger_ui/static``), found without importing the package; ``None`` if it is not
    installed (``/docs`` then answers 404, naming the package)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        directory = Path(location, "static")
        if all((directory / name).is_file() for name in SWAGGER_UI_FILES):
            return directory
    return None


class SwaggerUiFiles(StaticFiles):
    """Starlette's ``StaticFiles`` over ``directory``, serving only :data:`SWAGGER_UI_FILES`
    (404 for any other path, as JSON through the app's error handler)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory=directory)

    def get_path(self, scope: Scope) -> str:
        path = super().get_path(scope)
        if path not in SWAGGER_UI_FILES:
            raise HTTPException(404)
        return path


@functools.cache
def _reference_bytes(name: str) -> bytes:
    return resources.files(__package__).joinpath("reference", name).read_bytes()


def reference_file(name: str, media_type: str) -> Response:
    """A file of the package's ``reference/`` (the page, its script), with the headers that
    keep the page to this server."""
    headers = {
        "Cache-Control": "no-cache",
        "Content-Security-Policy": _POLICY,
        "X-Content-Type-Options": "nosniff",
    }
    return Response(_reference_bytes(name), media_type=media_type, headers=headers)
