"""Every example runs to the end (slow: the docs build runs them too)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("plot_*.py"))


def test_examples_are_gallery_scripts():
    assert len(EXAMPLES) >= 6
    for path in EXAMPLES:
        text = path.read_text()
        # sphinx-gallery: a module docstring whose first line is an underlined title
        lines = text.split('"""', 2)[1].strip().splitlines()
        assert len(lines) > 2 and set(lines[1]) == {"="}, path.name
        assert len(lines[1]) >= len(lines[0]), path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(path, monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(path), run_name="__main__")
