"""The shape of the package: no import cycles, a client without Flask,
small modules, and ``__all__`` listing each module's public names.

Read from the source with :mod:`ast`, so that an import inside a function
or under ``if t.TYPE_CHECKING:`` counts as much as one at the top.
"""
from __future__ import annotations

import ast
import importlib
import os
import pathlib
import subprocess
import sys
import typing as t

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "flask_jobify"

#: Import cycles allowed for now: each a tuple of modules, each importing the
#: next and the last the first, started at its smallest name. Empty since
#: issue 14; a cycle that is gone fails
#: :func:`test_architecture_known_cycles_still_exist` until it leaves the list.
KNOWN_CYCLES: frozenset[tuple[str, ...]] = frozenset()

#: Most lines a module may have (the house rule: past ~400, split it).
MAX_LINES = 400
#: Modules allowed past :data:`MAX_LINES` for now (none since issue 14).
LONG_MODULES: frozenset[str] = frozenset()

#: Modules whose ``__all__`` may be missing or incomplete (none since issue 14).
INCOMPLETE_ALL: frozenset[str] = frozenset()

Graph = dict[str, set[str]]


def _modules(root: pathlib.Path = PACKAGE) -> dict[str, pathlib.Path]:
    """Module name to file, for every module of the package under ``root``."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(name: str, path: pathlib.Path, modules: t.Collection[str]) -> set[str]:
    """The modules of the package that module ``name`` (at ``path``)
    imports anywhere in its body: ``from . import x`` names the submodule
    ``x`` when there is one, else the package; ``import a.b.c`` names the
    longest of ``a.b.c``, ``a.b``, ``a`` that is a module."""
    top = name.split(".", maxsplit=1)[0]

    def longest(dotted: str) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    found: set[str | None] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(longest(alias.name) for alias in node.names
                         if alias.name.split(".")[0] == top)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, up level - 1
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] != top:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else longest(target))
    found.discard(None)
    found.discard(name)
    return t.cast(set[str], found)


def import_graph(root: pathlib.Path = PACKAGE) -> Graph:
    """Each module of the package to the modules of the package it imports."""
    modules = _modules(root)
    return {name: _imported(name, path, modules) for name, path in modules.items()}


def cycles(graph: Graph, limit: int = 100) -> list[tuple[str, ...]]:
    """The elementary cycles of ``graph`` (up to ``limit``), each started at
    its smallest module: ``a -> b -> a`` is ``("a", "b")``."""
    found: list[tuple[str, ...]] = []
    for start in sorted(graph):
        # Paths from start through larger names only: each cycle once.
        stack = [(start, [start])]
        while stack and len(found) < limit:
            node, path = stack.pop()
            for nxt in sorted(graph.get(node, ()), reverse=True):
                if nxt == start:
                    found.append(tuple(path))
                elif nxt > start and nxt not in path:
                    stack.append((nxt, [*path, nxt]))
    return sorted(found)


def _show(cycle: tuple[str, ...]) -> str:
    return " -> ".join([*cycle, cycle[0]])


def test_architecture_cycles_are_found_in_a_made_up_graph() -> None:
    graph = {"a": {"b"}, "b": {"c", "a"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(graph) == [("a", "b"), ("a", "b", "c"), ("e",)]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_architecture_graph_resolves_every_kind_of_import() -> None:
    """The graph is right, so that no cycle hides from the next test."""
    graph = import_graph()
    assert "flask_jobify.client.job" in graph["flask_jobify.client.adapter"]  # from .job
    assert "flask_jobify.stores.base" in graph["flask_jobify.stores.redis.store"]  # ..base
    assert "flask_jobify.errors" in graph["flask_jobify.stores.redis.store"]  # ...errors
    # Imported inside a function (store_from_url).
    assert "flask_jobify.stores.redis" in graph["flask_jobify.stores"]
    # Imported under TYPE_CHECKING.
    assert "flask_jobify.extension" in graph["flask_jobify"]


def test_architecture_no_import_cycles() -> None:
    new = [cycle for cycle in cycles(import_graph()) if cycle not in KNOWN_CYCLES]
    assert not new, "import cycles:\n" + "\n".join(map(_show, new))


def test_architecture_known_cycles_still_exist() -> None:
    gone = KNOWN_CYCLES - set(cycles(import_graph()))
    assert not gone, "gone, remove them from KNOWN_CYCLES:\n" + "\n".join(map(_show, gone))


def test_architecture_client_imports_no_flask() -> None:
    """The client needs requests, not a web framework."""
    code = (
        "import sys, flask_jobify.client\n"
        "assert 'flask_jobify.client.session' in sys.modules\n"
        "web = sorted(name for name in sys.modules\n"
        "             if name.split('.')[0] in ('flask', 'werkzeug', 'flask_smorest'))\n"
        "assert not web, web\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=os.environ.copy(), check=False)
    assert done.returncode == 0, done.stderr


#: The layers of the data path, from the request's entry down to what every
#: layer uses (see docs/architecture.rst). A module may import modules of its
#: own layer or below, never one above it: whoever calls is above whoever is
#: called, and the data types flow down to everyone. Every module is in a
#: layer, so a new module is placed on purpose. The client is apart: it may
#: import only itself and the Flask-free protocol core.
LAYERS: tuple[tuple[str, ...], ...] = (
    # 9: the extension, what an app imports
    ("flask_jobify", "extension"),
    # 8: wiring into Flask: hooks, the app's callbacks, CLI, metrics, spec
    ("hooks", "callbacks", "cli", "metrics", "apidocs", "openapi", "dashboard", "dashboard.*"),
    # 7: request -> job (acceptance), job -> response (the jobs API)
    ("accept", "idempotency", "views", "events", "rerun"),
    # 6: one app's runtime, putting the pieces together
    ("state",),
    # 5: running jobs, holding them, telling receivers
    ("worker", "leases", "webhooks", "queues", "quota"),
    # 4: executors, the state machine, replay, the server's life
    ("thread_executor", "celery_executor", "lifecycle", "replay", "serving"),
    # 3: what those use: the run of a request, the executor protocol, timers
    ("runner", "executor", "scheduler", "threadpool", "overview", "access", "feed"),
    # 2: the job's data: stores, the captured request, options, config
    ("stores", "stores.*", "context", "capture", "trigger", "options", "preferences", "config",
     "schemas", "cursor", "callback_url", "estimates", "config.*"),
    # 1: the vocabulary: records, errors, rules and small tools
    ("models", "errors", "rules", "backoff", "keys", "perprocess", "signals"),
    # 0: the Flask-free protocol core, shared with the client
    ("protocol",),
)


def _layer_of(module: str) -> int | None:
    short = "flask_jobify" if module == "flask_jobify" else module.removeprefix("flask_jobify.")
    for depth, names in enumerate(reversed(LAYERS)):
        for name in names:
            if short == name or (name.endswith(".*") and short.startswith(name[:-1])):
                return depth
    return None


def _against_the_path(graph: Graph) -> tuple[list[str], list[str]]:
    """The server modules in no layer, and the imports that go up a layer."""
    server = [name for name in graph if not name.startswith("flask_jobify.client")]
    unplaced = sorted(name for name in server if _layer_of(name) is None)
    upward = sorted(
        f"{name} (layer {_layer_of(name)}) imports {target} (layer {_layer_of(target)})"
        for name in server if name not in unplaced for target in graph[name]
        if not target.startswith("flask_jobify.client") and target not in unplaced
        and t.cast(int, _layer_of(target)) > t.cast(int, _layer_of(name)))
    return unplaced, upward


def test_architecture_data_runs_one_way() -> None:
    unplaced, upward = _against_the_path(import_graph())
    assert not unplaced, f"put these modules in a layer of LAYERS: {unplaced}"
    assert not upward, "imports against the data path:\n" + "\n".join(upward)


def test_architecture_the_client_stands_apart() -> None:
    graph = import_graph()
    for name, targets in graph.items():
        if name.startswith("flask_jobify.client"):
            outside = {target for target in targets
                       if not target.startswith("flask_jobify.client")}
            assert outside <= {"flask_jobify.protocol"}, (name, outside)
        elif name != "flask_jobify":
            assert not any(target.startswith("flask_jobify.client") for target in targets), name


def test_architecture_an_upward_import_is_caught() -> None:
    """The check can fail: a store importing the state, and a module in no
    layer, are both reported."""
    graph = import_graph()
    graph["flask_jobify.stores.sqlite.store"] = {
        *graph["flask_jobify.stores.sqlite.store"], "flask_jobify.state"}
    graph["flask_jobify.made_up"] = set()
    unplaced, upward = _against_the_path(graph)
    assert unplaced == ["flask_jobify.made_up"]
    assert upward == ["flask_jobify.stores.sqlite.store (layer 2) imports"
                      " flask_jobify.state (layer 6)"]


def _lines(path: pathlib.Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def _relative(path: pathlib.Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


def test_architecture_modules_are_small() -> None:
    long = {_relative(path): _lines(path) for path in _modules().values()
            if _lines(path) > MAX_LINES and _relative(path) not in LONG_MODULES}
    assert not long, f"modules past {MAX_LINES} lines, split them: {long}"


@pytest.mark.parametrize("module", sorted(LONG_MODULES))
def test_architecture_long_modules_are_still_long(module: str) -> None:
    lines = _lines(PACKAGE.parent / module)
    assert lines > MAX_LINES, f"{module} has {lines} lines now: remove it from LONG_MODULES"


def _top_level(tree: ast.Module) -> tuple[set[str], set[str], list[str] | None]:
    """The names a module defines at its top level (``def``, ``class``,
    assignments; not TypeVars), those it imports, and its ``__all__``."""
    defined, imported, exported = set(), set(), None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            imported.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = {target.id for target in targets if isinstance(target, ast.Name)}
            if "__all__" in names:
                exported = list(ast.literal_eval(t.cast(ast.expr, node.value)))
            elif not (isinstance(node.value, ast.Call)
                      and ast.unparse(node.value.func) in ("t.TypeVar", "TypeVar")):
                defined |= names
    return defined, imported, exported


def test_architecture_all_lists_every_public_name() -> None:
    """``__all__`` names every public definition of its module, and only
    names the module binds (so ``import *`` works): a module with a PEP 562
    ``__getattr__`` (lazy exports) is imported to tell."""
    wrong = {}
    for name, path in _modules().items():
        module = _relative(path)
        defined, imported, exported = _top_level(ast.parse(path.read_text(encoding="utf-8")))
        if "__getattr__" in defined and exported is not None:
            lazy = importlib.import_module(name)
            defined |= {export for export in exported if hasattr(lazy, export)}
        if exported is None:
            problem = "no __all__"
        else:
            public = {name for name in defined if not name.startswith("_")} - {"logger"}
            problem = "; ".join(filter(None, [
                f"missing {sorted(public - set(exported))}" if public - set(exported) else "",
                f"unbound {sorted(set(exported) - defined - imported)}"
                if set(exported) - defined - imported else "",
            ]))
        if problem and module not in INCOMPLETE_ALL:
            wrong[module] = problem
        elif not problem and module in INCOMPLETE_ALL:
            wrong[module] = "complete now: remove it from INCOMPLETE_ALL"
    assert not wrong, wrong


def test_architecture_the_package_exports_every_exception() -> None:
    """An app catches what Flask-Jobify raises by its top-level name."""
    import flask_jobify
    from flask_jobify import errors

    raised = {name for name in errors.__all__
              if isinstance(getattr(errors, name), type)
              and issubclass(getattr(errors, name), BaseException)}
    assert raised - set(flask_jobify.__all__) == set()
    assert all(getattr(flask_jobify, name) is getattr(errors, name) for name in raised)
