"""The package's version, the one place it is written: packaging reads it from here
(``[tool.setuptools.dynamic]`` in ``pyproject.toml``), and so does the documentation site."""

__version__ = "0.1.0"
