"""The import graph of both packages: no cycles, and the core never imports the CLI or the studies.

The graph is read from the source with ``ast`` (nothing is imported): every
``import`` statement of a module, at module level or inside a function, is an
edge to the package module it names (``from . import sht`` -> ``spherical_cnn.sht``;
``from .errors import UserError`` -> ``spherical_cnn.errors``). Imports under
``if TYPE_CHECKING:`` are left out (they never run). Imports by a computed name
(``importlib.import_module(TASKS[name])``) are not edges.

Layers: ``spherical_cnn.cli`` (the command-line programs) may import anything;
``spherical_cnn.studies`` (rotation study, equivariance, retrieval) anything but
the CLI; every other module of both packages (the core, and the regression
tasks) neither.
"""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("spherical_cnn", "spherical_regression")
CLI = "spherical_cnn.cli"
STUDIES = "spherical_cnn.studies"


def package_modules(root, packages):
    """{dotted module name: path} of every .py file under the packages."""
    modules = {}
    for package in packages:
        for folder, dirs, files in os.walk(os.path.join(root, package)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    dotted = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                    modules[dotted[:-len(".__init__")] if dotted.endswith(".__init__") else dotted] = path
    return modules


def _is_type_checking(test):
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree, type_checking=False):
    """Every Import / ImportFrom node that can run (not under ``if TYPE_CHECKING:``, unless
    ``type_checking``: then those too)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        for child in ast.iter_child_nodes(node):
            if (not type_checking and isinstance(node, ast.If) and _is_type_checking(node.test)
                    and child in node.body):
                continue
            stack.append(child)


def import_graph(root=ROOT, packages=PACKAGES, type_checking=False):
    """{module: set of package modules it imports} (``type_checking``: also the imports
    under ``if TYPE_CHECKING:``)."""
    modules = package_modules(root, packages)

    def known(name):  # the longest prefix of ``name`` that is one of the modules
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in modules.items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        here = module if path.endswith("__init__.py") else module.rpartition(".")[0]
        edges = set()
        for node in _imports(tree, type_checking):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    parts = here.split(".")
                    anchor = ".".join(parts[:len(parts) - node.level + 1])
                    base = anchor + ("." + node.module if node.module else "")
                subs = [base + "." + a.name for a in node.names if base + "." + a.name in modules]
                targets = subs if len(subs) == len(node.names) else subs + [base]
            edges.update(t for t in map(known, targets) if t and t != module)
        graph[module] = edges
    return graph


def find_cycle(graph):
    """One cycle as a list of modules [a, b, ..., a], or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _inside(module, package):
    return module == package or module.startswith(package + ".")


def layer_violations(graph):
    """Edges from the core (or the studies) into the CLI, and from the core into the studies."""
    bad = []
    for module, targets in sorted(graph.items()):
        if _inside(module, CLI):
            continue
        for t in sorted(targets):
            if _inside(t, CLI) or (_inside(t, STUDIES) and not _inside(module, STUDIES)):
                bad.append(f"{module} -> {t}")
    return bad


# ---------------------------------------------------------------------------------------- tests
def test_the_graph_sees_imports_at_module_and_function_level():
    graph = import_graph()
    assert "spherical_cnn.layers" in graph["spherical_cnn.models"]  # from . import layers as sl
    assert "spherical_cnn.sht" in graph["spherical_cnn.layers"]  # from . import sht
    assert "spherical_cnn.data.builder" in graph["spherical_cnn.datasets"]  # inside a function
    assert "spherical_cnn.errors" in graph["spherical_regression.tasks.runner"]  # absolute
    assert "spherical_cnn.cli.common" in graph["spherical_cnn.cli.train"]


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_no_import_cycles_even_through_type_checking_imports():
    """What type checkers read has no cycle either (``_types`` and ``spherical_regression.signs``
    imported each other that way)."""
    cycle = find_cycle(import_graph(type_checking=True))
    assert cycle is None, " -> ".join(cycle)


def test_core_imports_neither_the_cli_nor_the_studies():
    assert layer_violations(import_graph()) == []


def test_regression_tasks_and_their_models_do_not_import_each_other():
    """The three former cycles: ``<task>_model`` imports ``<task>``, never the reverse."""
    graph = import_graph()
    for task in ("viewpoint", "normals", "rotation"):
        name = "spherical_regression.tasks." + task
        assert name in graph[name + "_model"]
        assert name + "_model" not in graph[name]


def test_params_builds_its_parser_without_the_cli():
    graph = import_graph()
    assert not [t for t in graph["spherical_cnn.params"] if _inside(t, CLI)]
    assert "spherical_cnn._arguments" in graph["spherical_cnn.params"]


@pytest.fixture
def toy(tmp_path):
    """A package whose files the checks below rewrite."""
    def write(files):
        for rel, text in files.items():
            path = tmp_path / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return import_graph(str(tmp_path), ("spherical_cnn",))
    write({"spherical_cnn/__init__.py": "", "spherical_cnn/cli/__init__.py": "",
           "spherical_cnn/studies/__init__.py": ""})
    return write


def test_a_cycle_through_a_function_level_import_is_found(toy):
    graph = toy({"spherical_cnn/a.py": "from . import b\n",
                 "spherical_cnn/b.py": "def f():\n    from .a import g\n"})
    assert find_cycle(graph) == ["spherical_cnn.a", "spherical_cnn.b", "spherical_cnn.a"]
    graph = toy({"spherical_cnn/b.py": "from typing import TYPE_CHECKING\n"
                                       "if TYPE_CHECKING:\n    from .a import g\n"})
    assert find_cycle(graph) is None


def test_core_importing_cli_or_studies_is_found(toy):
    graph = toy({"spherical_cnn/params.py": "def p():\n    from .cli.common import epilog\n",
                 "spherical_cnn/layers.py": "import spherical_cnn.studies.x\n",
                 "spherical_cnn/studies/x.py": "from .. import layers\n",
                 "spherical_cnn/cli/common.py": "from ..studies import x\n"})
    assert layer_violations(graph) == ["spherical_cnn.layers -> spherical_cnn.studies.x",
                                       "spherical_cnn.params -> spherical_cnn.cli.common"]
