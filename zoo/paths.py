"""Finding the zoo's configs and tables from a source checkout or an installed package."""

from __future__ import annotations

from pathlib import Path

__all__ = ["resolve_config_args", "zoo_path"]


def zoo_path(path: str | Path) -> Path:
    """``path`` as given, or inside the installed ``zoo`` package when it starts with ``zoo/``.

    Specs and configs name zoo files as ``zoo/configs/...``; from a source checkout that is a
    path relative to the repository root, after ``pip install`` it is found in the package.
    """
    path = Path(path)
    if path.exists() or not path.parts or path.parts[0] != "zoo":
        return path
    installed = Path(__file__).parent.joinpath(*path.parts[1:])
    return installed if installed.exists() else path


def resolve_config_args(args: list[str]) -> list[str]:
    """Command-line arguments with every ``--config zoo/...`` path resolved by :func:`zoo_path`."""
    resolved, expect_path = [], False
    for arg in args:
        if expect_path:
            arg, expect_path = str(zoo_path(arg)), False
        elif arg == "--config":
            expect_path = True
        elif arg.startswith("--config="):
            arg = "--config=" + str(zoo_path(arg.split("=", 1)[1]))
        resolved.append(arg)
    return resolved
