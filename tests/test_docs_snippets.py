"""The Python snippets of the README and the docs: every one compiles, and
the self-contained ones (an app, from its imports on) run as written."""
from __future__ import annotations

import pathlib
import re
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
_MARKDOWN = re.compile(r"^```python\n(.*?)^```", re.M | re.S)
_REST = re.compile(r"^([ \t]*)\.\. code-block:: python\n((?:\1[ \t]+\S.*\n|[ \t]*\n)+)", re.M)


def snippets() -> list[tuple[str, str]]:
    found = []
    readme = (ROOT / "README.md").read_text()
    found += [(f"README.md#{n}", code) for n, code in enumerate(_MARKDOWN.findall(readme))]
    for path in sorted((ROOT / "docs").glob("*.rst")):
        for n, match in enumerate(_REST.finditer(path.read_text())):
            found.append((f"docs/{path.name}#{n}", textwrap.dedent(match.group(2))))
    return found


SNIPPETS = snippets()


def test_docs_snippets_found():
    assert len(SNIPPETS) > 10


@pytest.mark.parametrize(("where", "code"), SNIPPETS, ids=[w for w, _ in SNIPPETS])
def test_docs_snippets_compile(where, code):
    compile(code, where, "exec")


def self_contained(code: str) -> bool:
    """An app from its imports on: it makes its ``Flask`` app itself and
    talks to no server."""
    return "app = Flask(" in code and "import" in code and "127.0.0.1" not in code


@pytest.mark.parametrize(("where", "code"), [s for s in SNIPPETS if self_contained(s[1])],
                         ids=[w for w, c in SNIPPETS if self_contained(c)])
def test_docs_snippets_run(where, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the instance folder (default SQLite store) goes there
    namespace: dict[str, object] = {"__name__": "snippet"}
    exec(compile(code, where, "exec"), namespace)
    app = namespace["app"] if "app" in namespace else namespace["create_app"]()  # type: ignore[operator]
    state = app.extensions.get("jobify")  # type: ignore[attr-defined]
    if state is not None:
        state.shutdown(0)
