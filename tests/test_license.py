"""The license: an MIT LICENSE file, declared in pyproject.toml so that the wheel and the sdist
ship it (``License-File: LICENSE``, under ``.dist-info/licenses/`` in the wheel)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_license_file_is_mit_and_declared() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n\nCopyright (c) 2026 the trio_jobpool authors\n")
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["license"] == "MIT"
    assert pyproject["project"]["license-files"] == ["LICENSE"]
    # license-files and the SPDX license string (PEP 639) need setuptools 77.
    assert "setuptools>=77" in pyproject["build-system"]["requires"]
