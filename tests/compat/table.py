"""The README's compatibility table, rendered from every tests/compat/cases_*.py module's CASES.

    python -m tests.compat.table            print the table
    python -m tests.compat.table --write    refresh the block between the markers in README.md
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

HERE = Path(__file__).parent
README = HERE.parents[1] / "README.md"
START, END = "<!-- compat-table:start -->", "<!-- compat-table:end -->"
COLUMNS = ("layout", "file", "ldm", "diffusers")


def all_cases() -> list[dict]:
    """CASES of each cases_*.py beside this file, in module-name order."""
    cases = []
    for info in sorted(pkgutil.iter_modules([str(HERE)]), key=lambda m: m.name):
        if info.name.startswith("cases_"):
            cases.extend(importlib.import_module(f"{__package__}.{info.name}").CASES)
    return cases


def render() -> str:
    rows = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for case in all_cases():
        cells = (case["name"], case["file"], case["ldm"], case["diffusers"])
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def readme_block(text: str) -> str:
    """What README.md holds between the markers (without the marker lines)."""
    start, end = text.index(START) + len(START), text.index(END)
    return text[start:end].strip("\n")


def write_readme(path: Path = README) -> None:
    text = path.read_text(encoding="utf-8")
    start, end = text.index(START) + len(START), text.index(END)
    path.write_text(text[:start] + "\n" + render() + "\n" + text[end:], encoding="utf-8")


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        write_readme()
        print(f"updated {README}")
    else:
        print(render())
