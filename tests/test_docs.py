"""Every ```python block in docs/*.md and README.md runs, so the docs stay true."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_doc_snippets_run(page, tmp_path, monkeypatch):
    blocks = BLOCK.findall(page.read_text(encoding="utf-8"))
    if not blocks:
        pytest.skip(f"{page.name} has no python snippets")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs.{page.stem}"}
    for i, code in enumerate(blocks, 1):
        try:
            exec(compile(code, f"{page.name}[block {i}]", "exec"), namespace)
        except Exception as e:  # name the page and block
            raise AssertionError(f"{page.name}, python block {i} failed: {type(e).__name__}: {e}") from e


def test_the_runner_finds_blocks():
    assert BLOCK.findall("text\n```python\nx = 1\n```\nmore\n") == ["x = 1\n"]
