"""Sphinx configuration of the documentation site: ``nox -s docs`` builds it into docs/_build.

The pages are the Markdown files of this folder, read by MyST; the API reference
(``api.md``) is generated from the package's docstrings by autodoc, which imports
``trio_jobpool``: the session installs it (editable) with the generator.
Nothing here reaches the network: no intersphinx, no remote assets.
"""

from __future__ import annotations

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
autodoc_class_signature = "separated"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = f"trio_jobpool {release}"
html_static_path: list[str] = []
