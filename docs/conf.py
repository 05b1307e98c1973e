"""Sphinx configuration of the documentation site: ``nox -s docs`` builds it into docs/_build.

The pages are the Markdown files of this folder, read by MyST; the API reference
(``api.md``) is generated from the package's docstrings by autodoc, which imports
``trio_jobpool``: the session installs it (editable) with the generator.
Nothing here reaches the network: no intersphinx, no remote assets.
"""

from __future__ import annotations

from typing import Any

from docutils.nodes import Element
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging

import trio_jobpool
from trio_jobpool import __version__

project = "trio_jobpool"
author = "trio_jobpool maintainers"
copyright = "trio_jobpool maintainers"
release = __version__
version = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "prometheus", "**/.ipynb_checkpoints"]

# Every heading of levels 1-4 gets the anchor GitHub gives it (``#opening-a-pool``), so the links
# between pages work both on the site and when the Markdown is read on GitHub; a link to an
# anchor no heading has is a warning, and so a failed build.
myst_heading_anchors = 4

# Every cross-reference must resolve: a `:class:` in a docstring naming nothing fails the build.
nitpicky = True

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = f"trio_jobpool {release}"
html_static_path: list[str] = []

# No intersphinx (the build must work offline), so names of the standard library and of the
# dependencies in signatures and docstrings resolve to nothing: they are shown as code, unlinked.
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(collections\.abc|contextlib|datetime|typing|os|random|sqlite3|outcome|trio|anyio)\..*",
    ),
    # The type variables of generic signatures (``JobHandle[T]``).
    (r"py:.*", r"(trio_jobpool\.[\w.]*\.)?(T|Ts|F)"),
    # The protocol every store has (a ``url``), the type of ``JobPool.store``; its docstring
    # names the stores it may be.
    (r"py:class", r"trio_jobpool\.stores\._base\.NamedStore"),
]


def _public_name(app: Sphinx, env: BuildEnvironment, node: Element, contnode: Element) -> Any:
    """Resolve a reference to a private module's name (``trio_jobpool._pool.JobPool``, as
    autodoc writes the types of signatures) to the public name documented on the API page
    (``trio_jobpool.JobPool``); a name no public object has stays unresolved (a warning)."""
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.startswith("trio_jobpool."):
        return None
    parts = target.split(".")
    public = [part for part in parts[1:] if not part.startswith("_")]
    if len(public) == len(parts) - 1:
        return None
    domain = env.domains["py"]
    for start in range(len(public)):
        candidate = ".".join(["trio_jobpool", *public[start:]])
        node["reftarget"] = candidate
        found = domain.resolve_xref(
            env, node["refdoc"], app.builder, node["reftype"], candidate, node, contnode
        )
        if found is not None:
            return found
    node["reftarget"] = target
    return None


def _every_public_name(app: Sphinx, env: BuildEnvironment) -> None:
    """Warn (and so fail the build) for a name of ``trio_jobpool.__all__`` that the API page
    does not document."""
    documented = env.domains["py"].objects
    for name in trio_jobpool.__all__:
        if f"trio_jobpool.{name}" not in documented:
            logging.getLogger(__name__).warning(
                "trio_jobpool.%s is public (__all__) but not documented in api.md", name
            )


def setup(app: Sphinx) -> None:
    app.connect("missing-reference", _public_name)
    app.connect("env-check-consistency", _every_public_name)
