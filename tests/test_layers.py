"""The import graph of ``src/robustxai``: no cycle between modules, no import from a lower layer to a higher.

Every module is parsed (nothing is imported), and every ``import`` statement counts, function-level (lazy)
imports included: a lazy import hides a cycle from Python, not from a reader. The layer order is written once,
here, in :data:`LAYERS` (the order of ``DESIGN.md``); a folder is a layer, and the modules at the top of the
package are sorted into the base layer or the application layer above everything.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = "robustxai"
SRC = Path(__file__).resolve().parents[1] / "src" / PACKAGE

#: The layers, lowest first: a module may import only from its own layer or a lower one.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    (
        "base",
        frozenset(
            {"_errors", "_validate", "_arrays", "_atomic", "_registry", "_runtime", "_version", "_types"}
        ),
    ),
    ("data", frozenset({"data"})),
    ("models", frozenset({"models"})),
    ("metrics", frozenset({"metrics"})),
    ("attacks", frozenset({"attacks"})),
    ("training", frozenset({"training"})),
    ("explain", frozenset({"explain"})),
    ("manipulate", frozenset({"manipulate"})),
    ("results", frozenset({"results"})),
    ("audit", frozenset({"audit"})),
    ("claims", frozenset({"claims"})),
    ("report", frozenset({"report"})),
    ("web", frozenset({"web"})),
    # the thin layer over the public API: the CLI, the package root, and what chains audit → report
    (
        "app",
        frozenset(
            {
                "cli",
                "_cli_errors",
                "_cli_help",
                "_cli_plan",
                "_cli_train",
                "_cli_progress",
                "_cli_trust",
                "_cli_web",
                "_pipeline",
                "_export",
                "__init__",
            }
        ),
    ),
)

#: Layers that never import each other although one sits above the other (DESIGN.md: the report, the claims
#: and the web studio read ``results``, never the audit's internals, and the audit never imports them).
NEVER_IMPORTS: dict[str, frozenset[str]] = {
    "report": frozenset({"audit"}),
    "claims": frozenset({"audit"}),
    "web": frozenset({"audit"}),
}

#: Upward imports that are known and not yet removed, as ``(importer, imported)`` module names, each with
#: the reason. The goal is an empty list; an entry that no longer matches an import fails the test.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}


#: Import cycles that are known and not yet removed (each the exact set of modules of one cycle), with the
#: reason. The goal is an empty list; an entry that no longer matches a cycle fails the test.
ALLOWED_CYCLES: dict[frozenset[str], str] = {}


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, not ``….__init__``)."""
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _resolve(node: ast.ImportFrom, importer: str) -> str:
    """The absolute module an ``ImportFrom`` names (relative imports resolved against ``importer``)."""
    if node.level == 0:
        return node.module or ""
    package = importer if MODULES[importer].name == "__init__.py" else importer.rsplit(".", 1)[0]
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def _imports(name: str) -> Iterator[tuple[str, int]]:
    """``(imported module, line)`` for every import of a package module in ``name``, lazy ones included.

    ``from pkg import sub`` counts as an import of the module ``pkg.sub`` when that is a module, else of
    ``pkg``; a name that is not a module of the package resolves to its nearest enclosing module.
    """
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"), filename=str(MODULES[name]))
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(node, name)
            targets = [
                f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module for a in node.names
            ]
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target.startswith(PACKAGE) and target != name:
                yield target, node.lineno


def _layer(module: str) -> int:
    """Index in :data:`LAYERS` of a module (``robustxai`` itself is the app layer's ``__init__``)."""
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else "__init__"
    for index, (_, members) in enumerate(LAYERS):
        if key in members:
            return index
    raise AssertionError(f"{module} belongs to no layer: add its folder or file to LAYERS in {__file__}")


GRAPH: dict[str, dict[str, int]] = {
    name: {target: line for target, line in sorted(_imports(name), key=lambda t: -t[1])} for name in MODULES
}


def test_every_module_has_a_layer() -> None:
    """A new top-level module or folder must be placed in the layer order before it can be imported."""
    for name in MODULES:
        _layer(name)


def _forbidden(src: str, dst: str) -> bool:
    """Whether ``src`` may not import ``dst``: a higher layer, or one of :data:`NEVER_IMPORTS`."""
    src_layer, dst_layer = LAYERS[_layer(src)][0], LAYERS[_layer(dst)][0]
    return _layer(dst) > _layer(src) or dst_layer in NEVER_IMPORTS.get(src_layer, frozenset())


def test_no_upward_import() -> None:
    """An import from a lower layer to a higher one (``audit`` → ``report``) or between layers that must stay
    apart (``report`` → ``audit``) is a design error."""
    found = {
        (src, dst): line
        for src, targets in GRAPH.items()
        for dst, line in targets.items()
        if _forbidden(src, dst)
    }
    unexpected = [
        f"{MODULES[src].relative_to(SRC.parent)}:{line}: {LAYERS[_layer(src)][0]} module {src} imports "
        f"{dst} of the layer {LAYERS[_layer(dst)][0]}"
        for (src, dst), line in sorted(found.items())
        if (src, dst) not in ALLOWED_UPWARD
    ]
    assert not unexpected, "upward imports:\n" + "\n".join(unexpected)
    stale = sorted(set(ALLOWED_UPWARD) - set(found))
    assert not stale, f"ALLOWED_UPWARD lists imports that no longer exist, remove them: {stale}"


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_no_import_cycle() -> None:
    """No module imports itself back through others, not even through a function-level import."""
    found = _cycles(GRAPH)
    cycles = [c for c in found if frozenset(c) not in ALLOWED_CYCLES]
    lines = []
    for component in cycles:
        edges = [
            f"{src} → {dst} (line {GRAPH[src][dst]})"
            for src in component
            for dst in GRAPH[src]
            if dst in component
        ]
        lines.append("; ".join(edges))
    assert not cycles, "import cycles:\n" + "\n".join(lines)
    stale = [sorted(c) for c in ALLOWED_CYCLES if list(sorted(c)) not in found]
    assert not stale, f"ALLOWED_CYCLES lists cycles that no longer exist, remove them: {stale}"


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b": 1}, "b": {"a": 2}, "c": {"a": 3}}, [["a", "b"]]),
        ({"a": {"b": 1}, "b": {"c": 2}, "c": {}}, []),
        ({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"d": 1}}, [["a", "b", "c"]]),
    ],
)
def test_cycle_finder_finds_cycles(graph: dict[str, dict[str, int]], expected: list[list[str]]) -> None:
    """The checker itself: a cycle of two or three modules is found, a chain is not one."""
    assert _cycles(graph) == expected


def test_lazy_imports_and_submodules_are_seen() -> None:
    """A function-level import counts, and ``from pkg import sub`` resolves to the module ``pkg.sub``."""
    root = GRAPH[PACKAGE]
    assert f"{PACKAGE}.audit._config" in root  # rx.load_config imports it inside the function
    assert f"{PACKAGE}.metrics" in root  # ``from robustxai import metrics`` is the subpackage
    assert _forbidden(f"{PACKAGE}.report._tables", f"{PACKAGE}.audit.store")
    assert _forbidden(f"{PACKAGE}.audit._runner", f"{PACKAGE}.report")
    assert not _forbidden(f"{PACKAGE}._pipeline", f"{PACKAGE}.report")
