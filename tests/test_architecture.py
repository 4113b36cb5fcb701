"""Imports point downward only: errors → adp → graph → models → io → calculators → train → cli.

Every import of ``ase_cartnet`` and ``phonon_ref`` is read from the source (AST), including the
imports inside functions and under ``if TYPE_CHECKING:``; only the body of an
``if __name__ == "__main__":`` block is left out (a script entry point, which may hand over to the
command line). A module may import its own layer or any layer below it, never one above, and the
packages of the tree (``ase_cartnet.graph``, ``ase_cartnet.io``, ``phonon_ref``, ...) must not
import each other in a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "errors",
        (
            "ase_cartnet",
            "ase_cartnet.errors",
            "ase_cartnet.weights",
            "ase_cartnet.data",
        ),
    ),
    (
        "adp",
        (
            "ase_cartnet.adp",
            "ase_cartnet.symmetry",
            "ase_cartnet.canonical_cell",
            "ase_cartnet.disorder",
            "ase_cartnet.scene",
            "ase_cartnet.report",
        ),
    ),
    (
        "graph",
        (
            "ase_cartnet.graph",
            "ase_cartnet.validation",
            "ase_cartnet.hydrogen",
            "ase_cartnet.plausibility",
        ),
    ),
    ("models", ("ase_cartnet.models",)),
    ("io", ("ase_cartnet.io", "ase_cartnet.plot", "ase_cartnet.viewer")),
    ("calculators", ("ase_cartnet.calculators", "phonon_ref", "ase_cartnet.batch")),
    ("train", ("ase_cartnet.train", "ase_cartnet.benchmarking")),
    ("cli", ("ase_cartnet.cli",)),
]
"""Bottom to top. ``phonon_ref`` (phonopy harmonic ADPs behind any ASE calculator) sits beside
the calculators: it uses adp, io and plot, and the teacher pipelines in train/ use it. The
helpers of the tests and benchmarks (``ase_cartnet.benchmarking``) build and save models, so they
sit with train/."""


def layer_of(module: str) -> int:
    """Rank of ``module`` in :data:`LAYERS`: its longest matching prefix (the bare package
    ``ase_cartnet`` matches only itself, its ``__init__``)."""
    best, rank = "", -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module == prefix or (
                module.startswith(prefix + ".") and prefix != "ase_cartnet"
            )
            if inside and len(prefix) > len(best):
                best, rank = prefix, index
    if rank < 0:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS")
    return rank


def unit_of(module: str) -> str:
    """The package or top-level module that cycles are checked between."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "ase_cartnet" else parts[0]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_main_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return (
        isinstance(node, ast.If)
        and isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
    )


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every project import in ``path``; ``from pkg import sub`` names the
    submodule when ``sub`` is one."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if is_main_block(node):
            continue
        stack.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append((node.lineno, candidate if is_module(candidate) else base))
    return [(line, m) for line, m in found if m.split(".")[0] in ("ase_cartnet", "phonon_ref")]


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def project_files() -> list[Path]:
    return sorted([*ROOT.glob("ase_cartnet/**/*.py"), *ROOT.glob("phonon_ref/**/*.py")])


def test_every_module_has_a_layer():
    for path in project_files():
        layer_of(module_name(path))


def test_no_upward_import():
    upward = []
    for path in project_files():
        here = module_name(path)
        for line, target in sorted(set(imports_of(path))):
            if layer_of(target) > layer_of(here):
                upward.append(
                    f"{path.relative_to(ROOT)}:{line} ({LAYERS[layer_of(here)][0]}) imports "
                    f"{target} ({LAYERS[layer_of(target)][0]})"
                )
    assert not upward, "imports that point upward:\n" + "\n".join(upward)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph ``edges`` (as a path that returns to its start), or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_cycle_between_packages():
    edges: dict[str, set[str]] = {}
    for path in project_files():
        here = unit_of(module_name(path))
        for _, target in imports_of(path):
            if unit_of(target) != here:
                edges.setdefault(here, set()).add(unit_of(target))
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_the_checks_can_fail(tmp_path):
    """The walker sees imports inside functions and resolves ``from pkg import submodule``."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None
    source = ROOT / "ase_cartnet" / "graph" / "neighbours.py"
    found = dict((m, line) for line, m in imports_of(source))
    assert "ase_cartnet.errors" in found
    assert layer_of("ase_cartnet.cli.predict") > layer_of("ase_cartnet.calculators.cartnet_adp")
    assert layer_of("phonon_ref.reference") < layer_of("ase_cartnet.train.deeprelax_teacher")
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("ase_cartnet_elsewhere")
