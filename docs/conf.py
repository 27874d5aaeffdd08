"""Sphinx configuration of the Flask-Jobify docs.

Build: ``sphinx-build -W -b html docs docs/_build/html`` (warnings are
errors). Examples: ``sphinx-build -b doctest docs docs/_build/doctest``.
"""
import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import flask_jobify  # noqa: E402

project = "Flask-Jobify"
author = "Flask-Jobify contributors"
copyright = "2026, Flask-Jobify contributors"
release = flask_jobify.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
]
# No intersphinx: the docs must build without network access.

exclude_patterns = ["_build"]
root_doc = "index"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_preserve_defaults = True
# The Redis store's reference builds without the redis extra installed.
autodoc_mock_imports = ["redis"]
html_theme = "alabaster"
html_static_path: list = []
pygments_style = "sphinx"
