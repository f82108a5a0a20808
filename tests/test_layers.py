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


def runtime_imports(path: Path) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of a file, at the top or inside functions, but for type-only ones
    (under ``if TYPE_CHECKING:``)."""
    tree = ast.parse(path.read_text())
    type_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in type_only
    ]


def imported_modules(path: Path) -> set[str]:
    """Every module (and imported name, as ``module.name``) a file imports at run time."""
    found = set()
    for node in runtime_imports(path):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif node.module:
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
    allowed = ("torch", "ln_lightning.losses", "ln_lightning.labels", "ln_lightning.registry")
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


def test_every_module_imports_first():
    """``import ln_lightning.<any module>`` in a fresh interpreter (a user's own script, a
    doctest run on one file) works: no import circle that only an earlier import hides."""
    package = ROOT / "ln_lightning"
    names = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in package.rglob("*.py")
        if path.name != "__main__.py"
    )
    probe = (
        "import importlib, sys, torch, lightning\n"
        f"for name in {names!r}:\n"
        "    ours = [m for m in sys.modules if m.split('.')[0] in ('ln_lightning', 'zoo')]\n"
        "    for loaded in ours:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError as error:\n"
        "        print(name, error)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == "", result.stdout


# ------------------------------------------------------------------ docs/architecture.md's layers
def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


PROJECT = {
    module_name(path): path
    for package in ("ln_lightning", "zoo")
    for path in (ROOT / package).rglob("*.py")
}


def project_imports(path: Path) -> set[str]:
    """The project modules ``path`` imports at run time: ``from pkg import name`` is
    ``pkg.name`` when that is a module, else ``pkg``."""
    found = set()
    for node in runtime_imports(path):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in PROJECT else node.module)
    return {name for name in found if name in PROJECT}


def readme_layers() -> dict[str, int]:
    """Each entry of docs/architecture.md's tree (``ln_lightning.data.base``,
    ``ln_lightning.callbacks``, ``zoo``) -> its line, the lower the line the lower the layer."""
    page = (ROOT / "docs" / "architecture.md").read_text()
    layout = page.split("## The tree", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    ranks: dict[str, int] = {}
    stack: list[tuple[int, str]] = []  # (indent, package) of the folders we are in
    for number, line in enumerate(layout.splitlines()):
        indent = len(line) - len(line.lstrip())
        entries = []
        for word in line.split():
            if not word.endswith((".py", "/")):
                break
            entries.append(word)
        if not entries or indent >= 20:  # a description continued on its own line
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        prefix = stack[-1][1] + "." if stack else ""
        for entry in entries:
            name = prefix + entry.removesuffix("/").removesuffix(".py")
            ranks[name] = number
            if entry.endswith("/"):
                stack.append((indent, name))
    return ranks


def layer_of(module: str, ranks: dict[str, int]) -> int:
    """A module's line: its own, else that of the nearest folder listed above it."""
    name = module
    while name not in ranks:
        assert "." in name, f"docs/architecture.md does not list {module}"
        name = name.rsplit(".", 1)[0]
    return ranks[name]


def test_the_architecture_page_lists_the_layers_in_import_order():
    """Every import points up docs/architecture.md's list: a module imports only modules on earlier
    lines (files on one line may import each other), a package's ``__init__`` and
    ``__main__`` also their own package's files, and a package imported whole counts as its
    last file (its ``__init__`` may load them all)."""
    ranks = readme_layers()
    assert {"zoo", "ln_lightning.labels", "ln_lightning.sweep.folds"} <= set(ranks)
    assert ranks["ln_lightning.labels"] < ranks["ln_lightning.module"] < ranks["ln_lightning.cli"]

    def rank(module: str) -> int:
        if PROJECT[module].name == "__init__.py":  # the package as a whole
            inside = [m for m in PROJECT if m.startswith(module + ".")]
            return max([layer_of(m, ranks) for m in inside] or [layer_of(module, ranks)])
        return layer_of(module, ranks)

    upward = []
    for module, path in PROJECT.items():
        if module == "ln_lightning":
            continue  # the lazy facade of the public names
        facade = path.name in ("__init__.py", "__main__.py")
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for imported in project_imports(path) - {module}:
            if facade and (imported == package or imported.startswith(package + ".")):
                continue
            if rank(imported) > layer_of(module, ranks):
                upward.append(f"{module} -> {imported}")
    assert not upward, f"imports pointing down docs/architecture.md's list: {sorted(upward)}"


def test_the_one_circle_is_gone():
    """No two modules import each other (directly)."""
    imports = {module: project_imports(path) for module, path in PROJECT.items()}
    circles = {
        tuple(sorted((a, b))) for a, deps in imports.items() for b in deps if a in imports[b]
    }
    assert not circles, sorted(circles)
