"""Imports point one way: the lower layers never reach up to the model, callbacks or CLI."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ln_lightning"
UPPER = ("ln_lightning.module", "ln_lightning.callbacks", "ln_lightning.cli", "ln_lightning.sweep")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions (type-only ones excluded)."""
    tree = ast.parse(path.read_text())
    type_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def files(*parts: str) -> list[Path]:
    return sorted(p for part in parts for p in (PACKAGE / part).rglob("*.py")) if parts else []


LOWER = [
    *files("losses", "data"),
    *[PACKAGE / f"{name}.py" for name in ("labels", "noise", "metrics", "inference", "analysis")],
]


@pytest.mark.parametrize("path", LOWER, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_lower_layers_do_not_import_the_model_callbacks_or_cli(path):
    reaching_up = {m for m in imported_modules(path) if m.startswith(UPPER)}
    assert not reaching_up, f"{path.name} imports {sorted(reaching_up)}"


@pytest.mark.parametrize("path", files("losses"), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_losses_depend_on_torch_alone(path):
    allowed = ("torch", "ln_lightning.losses", "ln_lightning.labels", "ln_lightning.noise")
    third_party = {
        m
        for m in imported_modules(path)
        if not m.startswith(allowed) and m.split(".")[0] not in sys.stdlib_module_names
        and m != "__future__"
    }  # fmt: skip
    assert not third_party, f"{path.name} imports {sorted(third_party)}"


def test_importing_the_functional_losses_loads_neither_lightning_nor_timm():
    probe = (
        "import sys, ln_lightning.losses.functional, ln_lightning.losses; "
        "print(sorted(m for m in ('lightning', 'timm', 'zoo', 'torchmetrics') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr[-2000:]
