"""The README's commands are meant to be pasted as they are: every shell block uses the
``.venv`` that "Two commands" makes (``.venv/bin/...``), not an activated one; and no page of
the documentation calls a shipped part of the package planned."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_TOOLS = ("pip", "trio-jobpool", "nox", "python", "python3")


def shell_commands(markdown: str) -> list[str]:
    """The commands of the ``sh`` blocks: each line, and each part of a line joined by ``&&``,
    without comments and continuation lines."""
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL):
        continued = False
        for line in block.splitlines():
            code = line.split(" #", 1)[0].strip()
            if code and not code.startswith("#") and not continued:
                commands += [part.strip() for part in code.split("&&")]
            continued = code.endswith("\\")
    return commands


def test_the_readme_uses_the_venv_of_two_commands() -> None:
    commands = shell_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(commands) >= 8, commands
    bare = [command for command in commands if command.split()[0] in VENV_TOOLS]
    # python3 -m venv makes the venv; everything else runs from it.
    assert all(command.startswith("python3 -m venv .venv") for command in bare), bare
    assert ".venv/bin/trio-jobpool serve --app examples.ci_jobs:registry" in commands


def test_no_page_calls_a_shipped_part_planned() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    found = [
        f"{page.relative_to(ROOT)}:{number}: {line.strip()}"
        for page in pages
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"\bplanned\b|wait for the distributed store", line, re.IGNORECASE)
    ]
    assert found == []
