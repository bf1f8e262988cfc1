"""The package's layers: imports only go downward, so each layer can be read without the ones above it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ldm_cli"
# Lowest first. A module may import its own layer and the layers below it, never one above.
LAYERS = [
    {"errors", "options", "__init__"},
    {"files"},
    {"models"},
    {"pipeline"},
    {"explain", "serve", "training", "demo"},
    {"commands"},
    {"cli", "__main__", "demo_run", "tiny", "reference"},
]


def _layer(top: str) -> int:
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"ldm_cli.{top} is in no layer; add it to LAYERS in {__file__}")


def _imported(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ldm_cli"):
            parts = node.module.split(".")
            if len(parts) > 1:
                yield parts[1]
            else:  # from ldm_cli import x
                yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "ldm_cli" and len(parts) > 1:
                    yield parts[1]


def test_imports_only_go_downward():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        top = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        here = _layer(top)
        for target in _imported(ast.parse(path.read_text())):
            if target == "__version__":
                continue
            if _layer(target) > here:
                upward.append(f"{path.relative_to(PACKAGE)} imports ldm_cli.{target}")
    assert not upward, "imports that go upward:\n" + "\n".join(upward)


def test_modules_stay_readable():
    long = [f"{p.relative_to(PACKAGE)}: {n} lines" for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 460]
    assert not long, "modules too long to read in one sitting:\n" + "\n".join(long)
