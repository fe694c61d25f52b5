"""The package's import rules, checked by parsing every module of ``src/fastrnn`` with :mod:`ast`.

Layers, bottom to top (``docs/architecture.md``); a module may import its own
layer and the layers below it, never one above:

0. foundations -- ``exceptions``, ``_version``, ``_validation``, ``_partition``,
   ``_threads``: the errors, the version, argument checks, the work partition
   and thread control. They import nothing of fastrnn but each other. They sit
   below the kernels because the Numba kernels cut their work with
   ``_partition`` and run it with ``_threads`` (and the Cython extension reads
   ``_partition`` too).
1. kernels -- ``_python``, ``_numba``, ``_cy`` (the compiled extension);
2. registry -- ``_backends``;
3. functional API -- ``functional``, and the package root ``fastrnn/__init__.py``,
   which re-exports the functional API and the registry;
4. shared training parts -- ``parameter``, ``optim``, ``losses``;
5. interop -- ``interop``;
6. facades -- ``nn`` and ``keras``, which never import each other in either direction;
7. integrations -- ``dask``, ``sklearn``, ``onnx``;
8. command line -- ``__main__``, ``demo``, ``benchmarks``.

Every import counts: module level and inside functions, ``import x``,
``from x import y`` (an edge to the submodule ``x.y`` when there is one, else
to ``x``), relative imports, and ``importlib.import_module`` calls, whose
argument is resolved when it is a string, an item of a module-level dict of
strings, or an f-string over the names of a module-level tuple it was checked
against (``if name in NAMES: import_module(f"fastrnn.{name}")``); any other
dynamic import fails the check, since it cannot be verified. Importing
``a.b.c`` also runs the ``__init__`` of ``a`` and ``a.b``; those implicit edges
are not counted (every package's ``__init__`` imports its own modules).

The one allowed exception: the package root's module ``__getattr__`` loads the
facades, training parts and the Keras facade's exceptions on first attribute
access (``fastrnn.nn``, ``fastrnn.keras``, ``fastrnn.NotCompiledError``), so
that ``import fastrnn`` stays light. Those lazy imports, and only those, may
run up the order. They still count as edges for the cycle check.

Finally, the module graph (every edge above, the allowed ones included) has no
cycle: no strongly connected component with more than one module.

The checker is tested on small synthetic packages too, so each rule is shown
to fail when broken.
"""

import ast
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "fastrnn"

#: Layers bottom to top: (name, module prefixes). A module belongs to the layer of its longest
#: matching prefix (``"fastrnn"`` itself matches only the package root).
LAYERS = (
    ("foundations", ("fastrnn.exceptions", "fastrnn._version", "fastrnn._validation", "fastrnn._partition",
                     "fastrnn._threads")),
    ("kernels", ("fastrnn._python", "fastrnn._numba", "fastrnn._cy")),
    ("registry", ("fastrnn._backends",)),
    ("functional API", ("fastrnn", "fastrnn.functional")),
    ("training parts", ("fastrnn.parameter", "fastrnn.optim", "fastrnn.losses")),
    ("interop", ("fastrnn.interop",)),
    ("facades", ("fastrnn.nn", "fastrnn.keras")),
    ("integrations", ("fastrnn.dask", "fastrnn.sklearn", "fastrnn.onnx")),
    ("command line", ("fastrnn.__main__", "fastrnn.demo", "fastrnn.benchmarks")),
)
#: The two facades: neither may import the other.
FACADES = ("fastrnn.nn", "fastrnn.keras")
#: Where imports may run up the order: the package root's lazy module ``__getattr__``.
LAZY_LOADER = ("fastrnn", "__getattr__")


@dataclass(frozen=True)
class Import:
    """One import found in the source: ``importer`` (line ``line`` of ``path``) imports ``imported``.

    ``function`` is the innermost function the import is in (None at module level).
    """

    importer: str
    path: str
    line: int
    imported: str
    function: str = None


# ----------------------------------------------------------------------------- the checker


def module_files(src, package=PACKAGE):
    """Module name -> path of every ``.py`` file of ``package`` under ``src``."""
    modules = {}
    for path in sorted(Path(src, package).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _literals(tree):
    """Module-level names bound to a literal tuple/list/set/dict of strings -> the strings (dict: values)."""
    found = {}
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            try:
                value = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError):
                continue
            strings = list(value.values()) if isinstance(value, dict) else value
            if isinstance(strings, (tuple, list, set)) and all(isinstance(s, str) for s in strings):
                for target in targets:
                    if isinstance(target, ast.Name):
                        found[target.id] = list(strings)
    return found


def _is_import_module(call):
    func = call.func
    return ((isinstance(func, ast.Attribute) and func.attr == "import_module")
            or (isinstance(func, ast.Name) and func.id == "import_module"))


class _ImportFinder(ast.NodeVisitor):
    """Collects every import of one module, with its line, enclosing function and ``if`` guards."""

    def __init__(self, module, is_package, known, literals):
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.known = known
        self.literals = literals
        self.functions = []
        self.guards = []
        self.found = []  # (line, imported or None when unresolvable, function, source text)

    def _add(self, node, imported, text=None):
        function = self.functions[-1] if self.functions else None
        self.found.append((node.lineno, imported, function, text))

    def _visit_function(self, node):
        self.functions.append(node.name)
        self.generic_visit(node)
        self.functions.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = _visit_function

    def visit_If(self, node):
        self.guards.append(node.test)
        for child in node.body:
            self.visit(child)
        self.guards.pop()
        for child in node.orelse:
            self.visit(child)
        self.visit(node.test)

    def visit_Import(self, node):
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node):
        if node.level:
            base = self.package.split(".")
            base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            self._add(node, submodule if submodule in self.known else source)

    def visit_Call(self, node):
        if _is_import_module(node) and node.args:
            targets = self._resolve(node.args[0])
            if targets is None:
                self._add(node, None, ast.unparse(node))
            for target in targets or ():
                self._add(node, target)
        self.generic_visit(node)

    def _resolve(self, arg):
        """The module names an ``import_module`` argument can take, or None when unknown."""
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return [arg.value]
        if isinstance(arg, ast.Subscript) and isinstance(arg.value, ast.Name) and arg.value.id in self.literals:
            return self.literals[arg.value.id]
        if (isinstance(arg, ast.JoinedStr) and len(arg.values) == 2 and isinstance(arg.values[0], ast.Constant)
                and isinstance(arg.values[1], ast.FormattedValue) and isinstance(arg.values[1].value, ast.Name)):
            prefix, variable = arg.values[0].value, arg.values[1].value.id
            for guard in reversed(self.guards):
                if (isinstance(guard, ast.Compare) and isinstance(guard.left, ast.Name)
                        and guard.left.id == variable and len(guard.ops) == 1 and isinstance(guard.ops[0], ast.In)
                        and isinstance(guard.comparators[0], ast.Name)
                        and guard.comparators[0].id in self.literals):
                    return [prefix + name for name in self.literals[guard.comparators[0].id]]
        return None


def find_imports(src, package=PACKAGE):
    """Every import of every module of ``package`` under ``src``.

    Returns
    -------
    modules : dict of str to Path
    imports : list of Import
        Only imports of ``package`` itself (the standard library and third parties are left out).
    unresolved : list of Import
        ``import_module`` calls whose argument the checker cannot resolve (``imported`` holds the call).
    """
    modules = module_files(src, package)
    imports, unresolved = [], []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        finder = _ImportFinder(module, path.name == "__init__.py", modules, _literals(tree))
        finder.visit(tree)
        for line, imported, function, text in finder.found:
            if imported is None:
                unresolved.append(Import(module, str(path), line, text, function))
            elif imported == package or imported.startswith(package + "."):
                imports.append(Import(module, str(path), line, imported, function))
    return modules, imports, unresolved


def layer_of(module, layers=LAYERS):
    """``(rank, layer name)`` of ``module`` by its longest matching prefix, or None."""
    best = None
    for rank, (name, prefixes) in enumerate(layers):
        for prefix in prefixes:
            matches = module == prefix or (prefix.count(".") > 0 and module.startswith(prefix + "."))
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), rank, name)
    return None if best is None else best[1:]


def _facade(module, facades):
    return next((f for f in facades if module == f or module.startswith(f + ".")), None)


def _where(item):
    inside = f" (in {item.function}())" if item.function else ""
    return f"{item.importer} ({item.path}:{item.line}{inside})"


def strongly_connected(graph):
    """The strongly connected components of ``graph`` (node -> set of nodes), Tarjan's algorithm, iterative."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = counter
                    counter += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph.get(successor, ())))))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
    return components


def shortest_cycle(component, graph):
    """A shortest cycle through the first module of ``component``: ``[a, b, ..., a]`` (breadth-first)."""
    start = min(component)
    previous = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(graph[node] & component):
                if successor == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if successor not in previous:
                    previous[successor] = node
                    following.append(successor)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover - a component of 2+ always has one


def check_imports(src, package=PACKAGE, layers=LAYERS, facades=FACADES, lazy_loader=LAZY_LOADER):
    """Every broken import rule in ``package`` under ``src``, one message each (empty: all rules hold).

    Each message names the importing module, its file and line, the imported module and the rule.
    """
    modules, imports, unresolved = find_imports(src, package)
    problems = [f"{_where(item)} calls {item.imported}: a dynamic import the import-rule test cannot "
                f"resolve (use a string, a module-level dict of strings, or an f-string guarded by "
                f"`if name in NAMES`)" for item in unresolved]
    for module in sorted(modules):
        if layer_of(module, layers) is None:
            problems.append(f"{module} ({modules[module]}) belongs to no layer of the import rules: "
                            f"add its prefix to LAYERS in tests/test_import_rules.py")
    graph = {module: set() for module in modules}
    edges = {}
    for item in imports:
        if item.imported == item.importer:
            continue
        if item.imported in modules:
            graph[item.importer].add(item.imported)
            edges.setdefault((item.importer, item.imported), item)
        importer, imported = layer_of(item.importer, layers), layer_of(item.imported, layers)
        if importer is None:
            continue
        if imported is None:
            problems.append(f"{_where(item)} imports {item.imported}, which belongs to no layer of the "
                            f"import rules")
            continue
        one, other = _facade(item.importer, facades), _facade(item.imported, facades)
        if one and other and one != other:
            problems.append(f"{_where(item)} imports {item.imported}: the facades {one} and {other} "
                            f"never import each other")
        elif imported[0] > importer[0]:
            if (item.importer, item.function) == lazy_loader:
                continue  # the one allowed exception: the package root's lazy loading
            problems.append(f"{_where(item)} imports {item.imported}: an import up the layer order "
                            f"({importer[1]} may not import {imported[1]})")
    for component in strongly_connected(graph):
        if len(component) > 1:
            cycle = shortest_cycle(component, graph)
            links = "; ".join(f"{_where(edges[(a, b)])} imports {b}" for a, b in zip(cycle, cycle[1:]))
            problems.append(f"import cycle between {', '.join(sorted(component))}: {links}")
    return problems


# ----------------------------------------------------------------------------- the real package


def test_fastrnn_follows_the_import_rules():
    problems = check_imports(SRC)
    assert not problems, "import rules broken:\n" + "\n".join(problems)


def test_the_checker_sees_the_whole_package():
    """Guards against a checker that passes because it found nothing."""
    modules, imports, _ = find_imports(SRC)
    assert {"fastrnn", "fastrnn._backends", "fastrnn.functional", "fastrnn.nn", "fastrnn.keras",
            "fastrnn.benchmarks.cli"} <= set(modules)
    edges = {(item.importer, item.imported) for item in imports}
    # a module-level import, an import inside a function, and a resolved import_module call
    assert ("fastrnn", "fastrnn._backends") in edges
    assert ("fastrnn._backends", "fastrnn._threads") in edges
    assert ("fastrnn._backends", "fastrnn._numba") in edges
    lazy = {item.imported for item in imports if (item.importer, item.function) == LAZY_LOADER}
    assert {"fastrnn.nn", "fastrnn.keras", "fastrnn.keras.exceptions"} <= lazy


def test_the_lazy_names_of_the_package_root_resolve():
    """``fastrnn.NotCompiledError`` and the sub-packages are reached only through the allowed lazy loader."""
    import fastrnn
    from fastrnn.keras.exceptions import ModelFileError, NotCompiledError

    assert fastrnn.NotCompiledError is NotCompiledError
    assert fastrnn.ModelFileError is ModelFileError
    from fastrnn import ModelFileError as imported

    assert imported is ModelFileError
    assert {"nn", "keras", "NotCompiledError", "ModelFileError"} <= set(dir(fastrnn))
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        fastrnn.no_such_name  # noqa: B018


# ----------------------------------------------------------------------------- the checker can fail

_ROOT = '''
import importlib

from fastrnn import functional

_SUBPACKAGES = ("nn", "keras")
_LAZY = {"SomeError": "fastrnn.keras.errors"}


def __getattr__(name):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"fastrnn.{name}")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
'''

#: A tiny package that follows every rule; each test below breaks one.
CLEAN = {
    "fastrnn/__init__.py": _ROOT,
    "fastrnn/exceptions.py": "",
    "fastrnn/_threads.py": "from fastrnn.exceptions import *\n",
    "fastrnn/_numba/__init__.py": "from fastrnn._numba import rnn\n",
    "fastrnn/_numba/rnn.py": "from fastrnn._threads import run_pieces\n",
    "fastrnn/_backends.py": ("import importlib\n_MODULES = {'numba': 'fastrnn._numba'}\n\n\n"
                             "def load(name):\n    return importlib.import_module(_MODULES[name])\n"),
    "fastrnn/functional/__init__.py": "from fastrnn.functional._rnn import rnn_forward\n",
    "fastrnn/functional/_rnn.py": "from fastrnn import _backends\nfrom .. import exceptions\n",
    "fastrnn/optim.py": "",
    "fastrnn/nn/__init__.py": "from fastrnn.nn.recurrent import RNN\n",
    "fastrnn/nn/recurrent.py": "from fastrnn.functional import rnn_forward\nfrom fastrnn import optim\n",
    "fastrnn/keras/__init__.py": "from .models import Sequential\n",
    "fastrnn/keras/errors.py": "",
    "fastrnn/keras/models.py": "from fastrnn.keras import errors\nfrom . import saving_format\n",
    "fastrnn/keras/saving_format.py": "",
    "fastrnn/benchmarks/__init__.py": "",
    "fastrnn/benchmarks/cli.py": "import fastrnn\nfrom fastrnn.benchmarks import grid\nfrom fastrnn import nn, keras\n",
    "fastrnn/benchmarks/grid.py": "",
}


def _write_package(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def _problems(tmp_path, changes=None):
    """``check_imports`` on :data:`CLEAN` with the files in ``changes`` (path -> text) added or replaced."""
    return check_imports(_write_package(tmp_path, {**CLEAN, **(changes or {})}))


def test_checker_accepts_a_package_that_follows_the_rules(tmp_path):
    assert _problems(tmp_path) == []


def test_checker_resolves_relative_and_dynamic_imports(tmp_path):
    _, imports, unresolved = find_imports(_write_package(tmp_path, CLEAN))
    edges = {(item.importer, item.imported, item.function) for item in imports}
    assert ("fastrnn.functional._rnn", "fastrnn.exceptions", None) in edges  # from .. import exceptions
    assert ("fastrnn.keras.models", "fastrnn.keras.saving_format", None) in edges  # from . import
    assert ("fastrnn.keras", "fastrnn.keras.models", None) in edges  # relative, from a package __init__
    assert ("fastrnn._backends", "fastrnn._numba", "load") in edges  # import_module(_MODULES[name])
    assert ("fastrnn", "fastrnn.keras", "__getattr__") in edges  # f"fastrnn.{name}" under `if name in`
    assert ("fastrnn", "fastrnn.keras.errors", "__getattr__") in edges
    assert unresolved == []


@pytest.mark.parametrize("where", ["module level", "in a function", "relative"])
def test_checker_fails_on_an_import_up_the_layers(tmp_path, where):
    text = {
        "module level": "from fastrnn._backends import load\n\nimport fastrnn.keras.saving_format\n",
        "in a function": "from fastrnn._backends import load\n\n\ndef f():\n    from fastrnn.keras import saving_format\n",
        "relative": "from fastrnn._backends import load\n\nfrom ..keras import saving_format\n",
    }[where]
    problems = _problems(tmp_path, {"fastrnn/functional/_rnn.py": text})
    assert len(problems) == 1, problems
    message = problems[0]
    assert message.startswith("fastrnn.functional._rnn (")
    assert "_rnn.py:" + ("5" if where == "in a function" else "3") in message
    assert "imports fastrnn.keras.saving_format: an import up the layer order" in message
    assert "functional API may not import facades" in message
    assert ("(in f())" in message) == (where == "in a function")


def test_checker_fails_on_a_kernel_importing_the_registry(tmp_path):
    # the registry loads the kernel, so this import up the order also closes a cycle: both are reported
    problems = _problems(tmp_path, {"fastrnn/_numba/rnn.py": "from fastrnn._threads import run_pieces\n"
                                                             "from fastrnn import _backends\n"})
    assert len(problems) == 2, problems
    assert "rnn.py:2) imports fastrnn._backends: an import up the layer order" in problems[0]
    assert "kernels may not import registry" in problems[0]
    assert problems[1].startswith("import cycle between fastrnn._backends, fastrnn._numba, fastrnn._numba.rnn:")


@pytest.mark.parametrize("importer, text", [
    ("fastrnn/nn/recurrent.py", "from fastrnn.functional import rnn_forward\nfrom fastrnn.keras import errors\n"),
    ("fastrnn/keras/models.py", "from fastrnn.keras import errors\nfrom fastrnn.nn.recurrent import RNN\n"),
])
def test_checker_fails_on_an_import_between_the_facades(tmp_path, importer, text):
    problems = _problems(tmp_path, {importer: text})
    assert len(problems) == 1, problems
    assert ".py:2) imports" in problems[0]
    assert "the facades" in problems[0] and "never import each other" in problems[0]


def test_checker_fails_on_an_import_cycle_in_one_layer(tmp_path):
    problems = _problems(tmp_path, {"fastrnn/keras/errors.py": "def f():\n    from fastrnn.keras.models import Sequential\n"})
    assert len(problems) == 1, problems
    assert problems[0].startswith("import cycle between fastrnn.keras.errors, fastrnn.keras.models:")
    assert "fastrnn.keras.errors (" in problems[0] and "errors.py:2 (in f())) imports fastrnn.keras.models" in problems[0]
    assert "models.py:1) imports fastrnn.keras.errors" in problems[0]


def test_checker_finds_a_longer_cycle_through_the_lazy_loader(tmp_path):
    # allowed up the layers, but root -> keras -> keras.models -> root is still a cycle
    problems = _problems(tmp_path, {"fastrnn/keras/models.py": "from fastrnn.keras import errors\nimport fastrnn\n"})
    assert len(problems) == 1, problems
    assert problems[0].startswith("import cycle between fastrnn, fastrnn.keras, fastrnn.keras.models:")


def test_checker_allows_up_imports_only_in_the_root_lazy_loader(tmp_path):
    eager = _ROOT + "\nimport fastrnn.keras\n"
    problems = _problems(tmp_path, {"fastrnn/__init__.py": eager})
    assert len(problems) == 1 and "fastrnn (" in problems[0] and "up the layer order" in problems[0], problems
    elsewhere = _ROOT + "\n\ndef load():\n    import fastrnn.nn\n"
    problems = _problems(tmp_path, {"fastrnn/__init__.py": elsewhere})
    assert len(problems) == 1 and "(in load())" in problems[0], problems
    # the same lazy loader in another module is no exception
    problems = _problems(tmp_path, {"fastrnn/functional/__init__.py": (
        "import importlib\n_NAMES = ('keras',)\n\n\ndef __getattr__(name):\n    if name in _NAMES:\n"
        "        return importlib.import_module(f'fastrnn.{name}')\n")})
    assert len(problems) == 1 and "fastrnn.functional (" in problems[0], problems


def test_checker_fails_on_a_dynamic_import_it_cannot_resolve(tmp_path):
    problems = _problems(tmp_path, {"fastrnn/_backends.py": "import importlib\n\n\ndef load(name):\n"
                                                             "    return importlib.import_module('fastrnn.' + name)\n"})
    assert len(problems) == 1, problems
    assert "fastrnn._backends (" in problems[0] and "cannot resolve" in problems[0]


def test_checker_fails_on_a_module_outside_every_layer(tmp_path):
    problems = _problems(tmp_path, {"fastrnn/utils.py": "", "fastrnn/optim.py": "from fastrnn import utils\n"})
    assert any(p.startswith("fastrnn.utils (") and "belongs to no layer" in p for p in problems), problems
    assert any("imports fastrnn.utils, which belongs to no layer" in p for p in problems), problems


def test_layer_of_uses_the_longest_prefix():
    assert layer_of("fastrnn")[1] == "functional API"
    assert layer_of("fastrnn.functional.cells")[1] == "functional API"
    assert layer_of("fastrnn._numba.rnn")[1] == "kernels"
    assert layer_of("fastrnn.keras.layers.recurrent")[1] == "facades"
    assert layer_of("fastrnn.benchmarks.grid")[1] == "command line"
    assert layer_of("fastrnn.neural") is None  # a prefix matches whole names only
    assert layer_of("fastrnn.nnx") is None


def test_strongly_connected_components_and_their_shortest_cycle():
    graph = {"a": {"b", "x"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}, "x": {"c"}}
    components = sorted(sorted(c) for c in strongly_connected(graph))
    assert components == [["a", "b", "c", "x"], ["d"], ["e"]]
    assert shortest_cycle({"a", "b", "c", "x"}, graph) == ["a", "b", "c", "a"]


def test_module_files_name_packages_by_their_folder(tmp_path):
    _write_package(tmp_path, {"fastrnn/__init__.py": "", "fastrnn/a/__init__.py": "", "fastrnn/a/b.py": ""})
    assert set(module_files(tmp_path)) == {"fastrnn", "fastrnn.a", "fastrnn.a.b"}
    assert os.path.basename(module_files(tmp_path)["fastrnn.a"]) == "__init__.py"


def test_benchmark_modules_share_only_public_names():
    """Within ``fastrnn.benchmarks`` what one module uses from another is public there (issue 10, item 7)."""
    problems = []
    for module, path in module_files(SRC).items():
        if not module.startswith("fastrnn.benchmarks"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fastrnn.benchmarks"):
                problems += [f"{module} ({path}:{node.lineno}) imports the private name {alias.name} from "
                             f"{node.module}" for alias in node.names if alias.name.startswith("_")]
    assert not problems, "\n".join(problems)
