"""Sphinx configuration of the skdarts documentation.

Build (warnings are errors, as in CI)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The examples in ``examples/`` run during the build (sphinx-gallery) and their
figures go into the gallery; the user guide's figures are drawn at build time
by ``skdarts.viz`` (matplotlib's plot directive). Nothing is downloaded.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")

import skdarts  # noqa: E402

project = "skdarts"
author = "skdarts developers"
copyright = "2026, skdarts developers"
release = skdarts.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "matplotlib.sphinxext.plot_directive",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "gen_modules"]
root_doc = "index"

# -- API reference ------------------------------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"  # numpydoc's Parameters sections say it
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False


_API_INTRO = """\
API reference
=============

Every public name of the ``skdarts`` namespace, then the public functions of
its modules. (This page is generated from the code's ``__all__`` by
``docs/conf.py`` when the documentation is built.)
"""


def _public_api() -> None:
    """Write ``api.rst``: autosummary tables of the public names.

    The top-level table lists ``skdarts.__all__``; one more table per public
    submodule that exists in this checkout lists its ``__all__``. Generated so
    the reference follows the code instead of a hand-kept list (the file is
    git-ignored).
    """
    lines = [
        _API_INTRO,
        "The ``skdarts`` namespace",
        "-------------------------",
        "",
        ".. currentmodule:: skdarts",
        "",
        ".. autosummary::",
        "   :toctree: generated",
        "",
    ]
    lines += [f"   {name}" for name in sorted(skdarts.__all__)]
    top = set(skdarts.__all__)
    for module, title in (
        ("skdarts.similarity", "Dataset signatures and distances"),
        ("skdarts.zoo", "The zoo"),
        ("skdarts.evaluation", "Evaluation"),
        ("skdarts.viz", "Plots"),
        ("skdarts.data", "Data"),
    ):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        names = [n for n in getattr(mod, "__all__", []) if n not in top]
        names = [n for n in names if callable(getattr(mod, n, None))]
        if not names:
            continue
        heading = f"{title} (``{module}``)"
        lines += ["", heading, "-" * len(heading), "", f".. currentmodule:: {module}"]
        lines += ["", ".. autosummary::", "   :toctree: generated", ""]
        lines += [f"   {name}" for name in sorted(names)]
    text = "\n".join(lines) + "\n"
    target = HERE / "api.rst"
    if not target.exists() or target.read_text() != text:
        target.write_text(text)


_public_api()

# -- examples gallery ---------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    # SKDARTS_DOCS_EXAMPLES: a regex choosing the examples to run (a quick local
    # build); SKDARTS_DOCS_PLOT_GALLERY=False runs none.
    "filename_pattern": os.environ.get("SKDARTS_DOCS_EXAMPLES", r"/plot_"),
    "ignore_pattern": r"__init__\.py|_helpers\.py",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "capture_repr": (),
    "matplotlib_animations": False,
    "reference_url": {"skdarts": None},
    "doc_module": ("skdarts",),
    "backreferences_dir": "gen_modules/backreferences",
    "show_memory": False,
    "plot_gallery": os.environ.get("SKDARTS_DOCS_PLOT_GALLERY", "True"),
}

# -- figures drawn by the user guide ------------------------------------------
plot_include_source = False
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 90)]

# -- HTML ---------------------------------------------------------------------
try:
    import pydata_sphinx_theme  # noqa: F401

    html_theme = "pydata_sphinx_theme"
    html_theme_options = {
        "navigation_with_keys": False,
        "show_prev_next": False,
    }
except ImportError:  # the docs extra installs it; the default theme still builds
    html_theme = "alabaster"
html_title = f"skdarts {release}"
html_static_path: list[str] = []
