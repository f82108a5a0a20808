"""Every ```python block in README.md and docs/*.md runs (blocks of one page share a namespace)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
PAGES = [
    page
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    if BLOCK.search(page.read_text())
]


def test_the_docs_have_examples():
    assert sum(len(BLOCK.findall(p.read_text())) for p in PAGES) >= 5


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_code_blocks_state_their_claims_as_assertions(page):
    """A claimed output is an ``assert`` the runner checks, not a ``print`` with a comment."""
    for block in BLOCK.findall(page.read_text()):
        assert "print(" not in block, f"{page.name}: write the claim as an assert:\n{block}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_code_blocks_run(page, tmp_path):
    blocks = BLOCK.findall(page.read_text())
    namespace: dict = {"__name__": "__docs__"}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for i, block in enumerate(blocks):
            exec(compile(block, f"{page.name}[block {i}]", "exec"), namespace)
    finally:
        os.chdir(cwd)


SHELL = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)


def shell_commands(program: str) -> list[tuple[str, list[str]]]:
    """(page, argv) of every ``program`` command in the docs' bash blocks (continuations joined;
    ``srun ln-fit ...`` and ``torchrun ... -m ln_lightning.cli ...`` count as ``ln-fit``)."""
    import shlex

    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in SHELL.findall(page.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" #", 1)[0].strip().removeprefix("srun ")  # SLURM
                if line.startswith("torchrun ") and " -m ln_lightning.cli " in line:
                    line = "ln-fit " + line.split(" -m ln_lightning.cli ", 1)[1]  # each node's
                if line.startswith(program + " "):
                    found.append((page.name, shlex.split(line)[1:]))
    return found


SWEEPS = shell_commands("ln-fit-sweep")


@pytest.mark.parametrize(("page", "argv"), SWEEPS, ids=[" ".join(a[:2]) for _, a in SWEEPS])
def test_documented_sweeps_resolve(page, argv, monkeypatch, capsys):
    """Every documented ``ln-fit-sweep`` command finds its spec, rows, methods and configs."""
    from ln_lightning.sweep import main

    monkeypatch.chdir(ROOT)
    main([argv[0], "--dry-run", *argv[1:]])  # before any "--" of the fit arguments
    commands = capsys.readouterr().out.splitlines()
    assert commands and all("ln_lightning.cli fit" in c for c in commands)


FITS = [(page, argv) for page, argv in shell_commands("ln-fit") if argv[0] == "fit"]


@pytest.mark.parametrize(("page", "argv"), FITS, ids=[f"{p}:{i}" for i, (p, _) in enumerate(FITS)])
def test_documented_fit_commands_parse(page, argv, monkeypatch, capsys):
    """Every documented ``ln-fit fit`` command parses (its configs exist and compose)."""
    from ln_lightning.cli import run_cli

    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exit_info:
        run_cli([*argv, "--print_config"])
    assert exit_info.value.code in (0, None), capsys.readouterr().err
    assert "class_path: ln_lightning" in capsys.readouterr().out


YAML = re.compile(r"^( *)```yaml\n(.*?)^\1```", re.S | re.M)
ALL_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CONFIGS = [
    (page.name, textwrap.dedent(block))
    for page in ALL_PAGES
    for _, block in YAML.findall(page.read_text())
]


@pytest.mark.parametrize(("page", "text"), CONFIGS, ids=[p for p, _ in CONFIGS])
def test_documented_configs_compose_with_the_default(page, text, tmp_path, monkeypatch, capsys):
    """Every ``yaml`` block of the docs is a valid ``ln-fit`` config on top of ``cli.yaml``."""
    from ln_lightning.cli import run_cli

    path = tmp_path / "documented.yaml"
    path.write_text(text)
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", "--config", "cli.yaml", "--config", str(path), "--print_config"])
    assert exit_info.value.code in (0, None), capsys.readouterr().err


def test_the_site_builds_and_lists_every_page(tmp_path):
    pytest.importorskip("mkdocs")
    import yaml

    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    listed = {page for entry in nav for page in entry.values()}
    assert listed == {p.name for p in (ROOT / "docs").glob("*.md")}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "troubleshooting" / "index.html").exists()


def test_the_architecture_page_names_every_module():
    """The tree of docs/architecture.md matches the package: each module is named there."""
    page = (ROOT / "docs" / "architecture.md").read_text()
    layout = page.split("## The tree", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    words = set(re.findall(r"[\w.]+", layout))
    modules = [
        path
        for package in ("ln_lightning", "zoo")
        for path in (ROOT / package).rglob("*.py")
        if path.name not in ("__init__.py", "__main__.py")
    ]
    missing = [
        str(p.relative_to(ROOT)) for p in modules if p.name not in words and p.stem not in words
    ]
    assert not missing, f"docs/architecture.md does not name {missing}"
    named = {w for w in words if w.endswith(".py")}
    existing = {p.name for p in modules}
    assert named <= existing | {"__init__.py", "__main__.py"}, named - existing


def test_every_public_class_has_a_runnable_example():
    """Each public class of the package shows its use in a ``>>>`` example (run by pytest's
    ``--doctest-modules``, set in pyproject.toml)."""
    import importlib
    import inspect
    import pkgutil

    import ln_lightning

    missing = []
    for info in pkgutil.walk_packages(ln_lightning.__path__, "ln_lightning."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if name.startswith("_") or not inspect.isclass(obj) or obj.__module__ != info.name:
                continue
            if ">>>" not in (obj.__doc__ or ""):
                missing.append(f"{info.name}.{name}")
    assert not missing, f"public classes without an example: {missing}"
    options = (ROOT / "pyproject.toml").read_text()
    assert "--doctest-modules" in options and '"ln_lightning"' in options


@pytest.mark.parametrize(
    ("kind", "page"),
    [("method", "losses.md"), ("strategy", "strategies.md"), ("datamodule", "data.md")],
)
def test_the_docs_describe_every_registered_method_and_data_module(kind, page):
    """Adding a loss is its file, its config and its section: the docs check reads the registry."""
    from ln_lightning.registry import registered

    text = (ROOT / "docs" / page).read_text()
    missing = [entry.cls.__name__ for entry in registered(kind) if entry.cls.__name__ not in text]
    assert not missing, f"docs/{page} does not describe {missing}"


def test_the_paper_is_cited_exactly():
    import yaml

    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    authors = citation["preferred-citation"]["authors"]
    assert [a["family-names"] for a in authors] == ["Englesson", "Mehrpanah", "Azizpour"]
    assert citation["cff-version"] == "1.2.0" and citation["version"] == ln_version()
    pages = [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("ln_lightning/**/*.py")]
    assert not [p.name for p in pages if "Mehrjou" in p.read_text()]
    assert "Mehrpanah, Amir" in (ROOT / "docs/citation.md").read_text()


def ln_version() -> str:
    import ln_lightning

    return ln_lightning.__version__
