"""The package's import layering (docs: docs/layout.md): every import of a pcgrasp module,
at module level or inside a function, goes from a layer to the same or a lower one, and the
import graph between modules (function-level imports included: a lazy import is still a
dependency) has no cycle. Read from the source with ``ast`` (no imports run),
so a new upward import fails here whatever the test run covers."""
import ast
import os

import pytest

import pcgrasp

ROOT = os.path.dirname(pcgrasp.__file__)

# lowest first; a module may import its own layer and the layers below it
LAYERS = [
    {"pcgrasp", "pcgrasp._ext", "pcgrasp._build_config", "pcgrasp.ops"},
    {"pcgrasp.geometry"},
    {"pcgrasp.nn", "pcgrasp.data", "pcgrasp.losses", "pcgrasp.metrics"},
    {"pcgrasp.labels"},
    {"pcgrasp.models", "pcgrasp.eval", "pcgrasp.planning"},
    {"pcgrasp.train", "pcgrasp.vis"},
    {"pcgrasp.cli", "pcgrasp.__main__", "pcgrasp.ops_demo"},
]
# siblings within a layer that must not import each other (either way)
SEPARATE = [("pcgrasp.nn", "pcgrasp.data"), ("pcgrasp.models", "pcgrasp.eval")]


def group_of(module):
    """The layer entry that owns ``module`` (the longest matching prefix)."""
    best = None
    for layer in LAYERS:
        for name in layer:
            if (module == name or module.startswith(name + ".")) and (best is None or len(name) > len(best)):
                best = name
    return best


def rank_of(module):
    g = group_of(module)
    return next(i for i, layer in enumerate(LAYERS) if g in layer)


def package_modules():
    """{module name: path} of every .py file in the package."""
    out = {}
    for d, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(d, f), os.path.dirname(ROOT))[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                out[".".join(rel)] = os.path.join(d, f)
    return out


def _resolve(module, is_package, node, known):
    """The pcgrasp modules an import node names (``from .. import ops`` names pcgrasp.ops)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "pcgrasp"]
    if node.level:
        parts = module.split(".")
        base_parts = parts if is_package else parts[:-1]
        base_parts = base_parts[:len(base_parts) - node.level + 1]
        base = ".".join(base_parts + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    if base.split(".")[0] != "pcgrasp":
        return []
    out = []
    for a in node.names:
        sub = f"{base}.{a.name}"
        out.append(sub if sub in known else base)
    return out


def import_edges():
    """[(importer, imported, lineno, at_module_level)] over the package."""
    mods = package_modules()
    edges = []
    for mod, path in mods.items():
        tree = ast.parse(open(path, encoding="utf-8").read(), path)
        top = set(id(n) for n in tree.body)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _resolve(mod, path.endswith("__init__.py"), node, mods):
                    edges.append((mod, target, node.lineno, id(node) in top))
    return edges


def test_resolver_reads_relative_and_absolute_imports():
    known = {"pcgrasp", "pcgrasp.ops", "pcgrasp.models", "pcgrasp.models.gsnet", "pcgrasp.models.gsnet.labels",
             "pcgrasp.geometry", "pcgrasp.geometry.views"}
    parse = lambda src: ast.parse(src).body[0]  # noqa: E731
    assert _resolve("pcgrasp.models.gsnet.network", False, parse("from ... import ops"), known) == ["pcgrasp.ops"]
    assert _resolve("pcgrasp.models.gsnet", True, parse("from .labels import x"), known) == \
        ["pcgrasp.models.gsnet.labels"]
    assert _resolve("pcgrasp.models.gsnet.network", False, parse("from ...geometry.views import a, b"), known) == \
        ["pcgrasp.geometry.views"] * 2
    assert _resolve("pcgrasp.ops.knn", False, parse("import pcgrasp.geometry"), known) == ["pcgrasp.geometry"]
    assert _resolve("pcgrasp.ops.knn", False, parse("import numpy"), known) == []
    assert rank_of("pcgrasp.models.gsnet.labels") > rank_of("pcgrasp.labels.grasp_labels")
    assert rank_of("pcgrasp.labels.views") > rank_of("pcgrasp.geometry.views")


def test_every_module_has_a_layer():
    missing = sorted(m for m in package_modules() if group_of(m) is None)
    assert not missing, f"modules outside every layer (add them to LAYERS): {missing}"


def test_no_import_goes_up_a_layer():
    bad = [f"{a} (line {line}) imports {b}" for a, b, line, _ in import_edges() if rank_of(b) > rank_of(a)]
    assert not bad, "upward imports:\n" + "\n".join(bad)


@pytest.mark.parametrize("x, y", SEPARATE)
def test_separate_siblings_do_not_import_each_other(x, y):
    bad = [f"{a} (line {line}) imports {b}" for a, b, line, _ in import_edges()
           if {group_of(a), group_of(b)} == {x, y}]
    assert not bad, "\n".join(bad)


def find_cycle(edges, module_level_only=False):
    """An import cycle as a list of modules, or None (DFS)."""
    graph = {}
    for a, b, _, top in edges:
        if (top or not module_level_only) and a != b and not a.startswith(b + "."):  # a package's own __init__ is imported first anyway
            graph.setdefault(a, set()).add(b)
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if not state.get(m):
                c = visit(m)
                if c:
                    return c
        state[n] = 2
        stack.pop()
        return None

    for n in sorted(graph):
        if not state.get(n):
            c = visit(n)
            if c:
                return c
    return None


def test_cycle_finder_finds_a_planted_circle():
    edges = [("a", "b", 1, True), ("b", "c", 1, True), ("c", "a", 1, True), ("c", "d", 1, True)]
    assert find_cycle(edges) in (["a", "b", "c", "a"], ["b", "c", "a", "b"], ["c", "a", "b", "c"])
    assert find_cycle(edges[:2] + edges[3:]) is None
    lazy = [("a", "b", 1, False), ("b", "a", 1, True)]  # a function-level import closes this one
    assert find_cycle(lazy) is not None and find_cycle(lazy, module_level_only=True) is None


def test_no_import_cycle():
    cycle = find_cycle(import_edges())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
