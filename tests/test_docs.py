"""Every ```python block in README.md and docs/*.md runs (blocks of one page share a namespace)."""

from __future__ import annotations

import os
import re
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
