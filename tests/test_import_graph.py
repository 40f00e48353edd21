"""The package's module graph: no import cycle, and the packages flow down (LAYERS, which docs/architecture.md quotes).

Every edgedistill/**/*.py is parsed with ast; every import counts, the ones inside functions and `if TYPE_CHECKING:`
blocks too (a deferred import is still a dependency), relative imports resolved against the importing module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "edgedistill"

# Bottom layer first. A layer is a set of units (a package, or a list of top-level modules); a module may import
# modules of its own unit and of any unit in a lower layer: never a unit beside it in its layer, nothing above.
LAYERS = [
    # the torch-free core every bundle carries: standard library, numpy, onnxruntime, tokenizers and itself only
    {"edge": ["edgedistill.edge"]},
    # shared by every stage: the task spec, data files, annotations, model dirs, atomic writers, errors, settings
    {
        "core": [
            "edgedistill",
            "edgedistill.annotations",
            "edgedistill.atomic",
            "edgedistill.bounds",
            "edgedistill.choices",
            "edgedistill.console",
            "edgedistill.data",
            "edgedistill.errors",
            "edgedistill.model_dir",
            "edgedistill.rundir",
            "edgedistill.runtime",
            "edgedistill.task",
            "edgedistill.user_yaml",
        ]
    },
    # the first stages, independent of each other: annotate (teacher/) and train, strip (distill/)
    {"teacher": ["edgedistill.teacher"], "distill": ["edgedistill.distill"]},
    # export: ONNX, INT8, parity against the torch student, the bundle
    {"deploy": ["edgedistill.deploy"]},
    # what reads bundles and students back: accuracy (evaluate) and speed (measure/)
    {"evaluate": ["edgedistill.evaluate"], "measure": ["edgedistill.measure"]},
    # compress exports, scores and times its candidates, so it sits above deploy/, evaluate and measure/
    {"compress": ["edgedistill.compress"]},
    # the run's report.md reads every stage's artifacts
    {"report": ["edgedistill.run_report"]},
    # the CLI and `edgedistill run`: nothing below imports them
    {
        "interface": [
            "edgedistill.cli",
            "edgedistill.commands",
            "edgedistill.options",
            "edgedistill.pipeline",
            "edgedistill.stages",
        ]
    },
]

# Imports that go up a layer on purpose, each with its reason. Deferred (inside the function), so no cycle at import.
UPWARD = {
    ("edgedistill.model_dir", "edgedistill.distill.modeling_edgedistill"): (
        "load_config reads a student dir's own head config classes (transformers, torch), deferred"
    ),
}


# ---------------------------------------------------------------------------------------------
# The graph


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(module: str, is_package: bool, tree: ast.AST, known) -> set[str]:
    """The package's modules `tree` imports, anywhere in it (functions included), relative imports resolved."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".") if is_package else module.split(".")[:-1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` the module mod
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:  # `import a.b.c` of a module a.b: its deepest module
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {
        m: imported(m, p.name == "__init__.py", ast.parse(p.read_text(encoding="utf-8")), known)
        for m, p in known.items()
    }


# ---------------------------------------------------------------------------------------------
# The checks (pure functions of a graph, so a small fake graph shows they fail)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every group of modules that import each other, directly or through others (Tarjan's strongly connected
    components of more than one module, or a module importing itself)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in graph.get(v, ()):
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def unit_of(module: str, layers=LAYERS) -> tuple[int, str] | None:
    """(layer index, unit name) of a module: the unit whose entry names it or its package, the longest entry
    winning; the root package `edgedistill` names only itself. None for a module no unit holds."""
    best = None
    for i, layer in enumerate(layers):
        for unit, entries in layer.items():
            for entry in entries:
                inside = module == entry or (entry != "edgedistill" and module.startswith(entry + "."))
                if inside and (best is None or len(entry) > best[0]):
                    best = (len(entry), i, unit)
    return best and best[1:]


def layering_problems(graph: dict[str, set[str]], layers=LAYERS, upward=UPWARD) -> list[str]:
    """Each import that goes up a layer or sideways to another unit of the same layer, and each module no unit holds."""
    problems = []
    for module in sorted(graph):
        here = unit_of(module, layers)
        if here is None:
            problems.append(f"{module}: in no unit of LAYERS; add it where it belongs")
            continue
        for target in sorted(graph[module]):
            there = unit_of(target, layers)
            if there is None or there[1] == here[1] or (module, target) in upward:
                continue
            if there[0] > here[0]:
                problems.append(f"{module} ({here[1]}) imports {target}, of {there[1]}, a layer above")
            elif there[0] == here[0]:
                problems.append(f"{module} ({here[1]}) imports {target}, of {there[1]}, beside it in its layer")
    return problems


# ---------------------------------------------------------------------------------------------
# The package as it is


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_no_import_cycle(graph):
    assert cycles(graph) == []


def test_the_packages_flow_down(graph):
    assert layering_problems(graph) == []


def test_the_named_rules_hold(graph):
    """The rules LAYERS implies, spelled out: edge/ imports only itself; deploy/ and measure/ never import
    compress/; distill/ never imports deploy/, measure/ or compress/; nothing but the interface imports commands/,
    cli or pipeline."""

    def imports_of(prefix):
        return {(m, t) for m, ts in graph.items() if m == prefix or m.startswith(prefix + ".") for t in ts}

    def into(pairs, *prefixes):
        return sorted((m, t) for m, t in pairs if any(t == p or t.startswith(p + ".") for p in prefixes))

    assert [(m, t) for m, t in imports_of("edgedistill.edge") if not t.startswith("edgedistill.edge.")] == []
    assert into(imports_of("edgedistill.deploy") | imports_of("edgedistill.measure"), "edgedistill.compress") == []
    assert (
        into(imports_of("edgedistill.distill"), "edgedistill.deploy", "edgedistill.measure", "edgedistill.compress")
        == []
    )
    interface = ("edgedistill.commands", "edgedistill.cli", "edgedistill.pipeline")
    below = {(m, t) for m, ts in graph.items() if unit_of(m)[1] != "interface" for t in ts}
    assert into(below, *interface) == []


def test_the_graph_sees_deferred_and_relative_imports(graph):
    """Imports inside functions count (compress.smaller defers distill.train's, which loads torch), and relative ones
    resolve to modules (`from ..distill import strip, train`, `from . import bundle as bundle_mod`)."""
    assert {"edgedistill.distill.train", "edgedistill.distill.strip"} <= graph["edgedistill.compress.smaller"]
    assert "edgedistill.deploy.bundle" in graph["edgedistill.deploy.export"]
    assert "edgedistill.distill.modeling_edgedistill" in graph["edgedistill.model_dir"]


def test_every_upward_import_is_still_there(graph):
    """An UPWARD entry whose import is gone is dropped from the list, so the list stays the exceptions there are."""
    assert [pair for pair in UPWARD if pair[1] not in graph.get(pair[0], set())] == []


# ---------------------------------------------------------------------------------------------
# The checks can fail


def test_a_cycle_in_a_fake_graph_is_flagged():
    fake = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}, "p.e": {"p.e"}}
    assert cycles(fake) == [["p.a", "p.b", "p.c"], ["p.e"]]
    assert cycles({"p.a": {"p.b"}, "p.b": set(), "p.c": {"p.a", "p.b"}}) == []


def test_an_import_up_or_sideways_in_a_fake_graph_is_flagged():
    layers = [{"low": ["x.low"]}, {"left": ["x.left"], "right": ["x.right"]}, {"top": ["x.top"]}]
    fake = {
        "x.low.a": {"x.left.b"},  # up
        "x.left.b": {"x.right.c", "x.low.a"},  # sideways, and down (fine)
        "x.right.c": set(),
        "x.top": {"x.left.b", "x.low.a"},  # down (fine)
        "x.stray": set(),  # in no unit
    }
    assert layering_problems(fake, layers, {}) == [
        "x.left.b (left) imports x.right.c, of right, beside it in its layer",
        "x.low.a (low) imports x.left.b, of left, a layer above",
        "x.stray: in no unit of LAYERS; add it where it belongs",
    ]
    assert layering_problems(fake, layers, {("x.low.a", "x.left.b"): "why"})[1:] == [
        "x.stray: in no unit of LAYERS; add it where it belongs"
    ]
