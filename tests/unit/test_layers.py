"""The product's import graph: no cycle, and every import points down the layers.

trainables (bottom to top): core -> geometry -> data -> nets -> evaluation -> training -> the CLI
modules at the package's top (train, evaluate, predict, hc, ...) -> bench.
search (above all of trainables): shared -> experiment -> {worker, report} -> driver -> cli -> run
-> bench. The worker side and the report sit on one level and never import each other.

Every import counts, at a module's top or inside a function: a lazy import is still an arrow.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("trainables", "search")

# Longest prefix wins; a module may import its own group and any group of a lower rank.
LAYERS = {
    "trainables.core": 0,
    "trainables.geometry": 1,
    "trainables.data": 2,
    "trainables.nets": 3,
    "trainables.evaluation": 4,
    "trainables.training": 5,
    "trainables": 6,  # the CLI modules at the package's top
    "trainables.bench": 7,
    "search.shared": 10,
    "search.experiment": 11,
    "search.worker": 12,
    "search.report": 12,
    "search": 12,  # search/__init__.py
    "search.driver": 13,
    "search.cli": 14,
    "search.run": 15,  # the launcher script `ray submit` uploads: over the CLI
    "search.bench": 16,
}


def module_files(root: Path, packages=PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the packages under `root`."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported product module, line) for every import in the file, nested ones included."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package upwards
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from pkg import sub` imports the submodule pkg.sub when there is one.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        for target in targets:
            while target and target not in modules:  # `import a.b.c` -> the deepest module file
                target = target.rpartition(".")[0]
            if target and target != name:
                found.append((target, node.lineno))
    return found


def import_graph(root: Path, packages=PACKAGES) -> dict[str, list[tuple[str, int]]]:
    modules = module_files(root, packages)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, list[tuple[str, int]]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None. (Package __init__ files importing nothing
    but their own submodules would count too: these packages' __init__ files are empty.)"""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target, _ in graph.get(node, []):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def group_of(module: str, layers=LAYERS) -> str:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in layers:
            return ".".join(parts[:n])
    raise KeyError(f"{module}: in no layer; add its package to LAYERS")


def upward_imports(graph, layers=LAYERS) -> list[str]:
    """Each import whose target's layer is not below the importer's (its own group aside)."""
    wrong = []
    for module, targets in sorted(graph.items()):
        mine = group_of(module, layers)
        for target, line in targets:
            theirs = group_of(target, layers)
            if theirs != mine and layers[theirs] >= layers[mine]:
                wrong.append(f"{module}:{line} imports {target} ({theirs} is not below {mine})")
    return wrong


def test_the_product_has_no_import_cycle():
    assert find_cycle(import_graph(REPO)) is None


def test_every_import_points_down_the_layers():
    assert upward_imports(import_graph(REPO)) == []


def test_every_product_module_is_in_a_layer():
    for module in module_files(REPO):
        group_of(module)  # raises KeyError naming the module


def _plant(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_planted_cycle_is_found(tmp_path):
    _plant(
        tmp_path,
        {
            "trainables/__init__.py": "",
            "trainables/core/__init__.py": "",
            "trainables/core/a.py": "from trainables.core.b import x\n",
            "trainables/core/b.py": "def f():\n    from trainables.core import a  # lazy\n",
        },
    )
    cycle = find_cycle(import_graph(tmp_path, ("trainables",)))
    assert cycle is not None and set(cycle) == {"trainables.core.a", "trainables.core.b"}


def test_a_planted_upward_import_is_found(tmp_path):
    _plant(
        tmp_path,
        {
            "trainables/__init__.py": "",
            "trainables/core/__init__.py": "",
            "trainables/core/config.py": "import trainables.training.loop\n",
            "trainables/training/__init__.py": "",
            "trainables/training/loop.py": "from trainables.core import config\n",
            "search/__init__.py": "",
            "search/worker/__init__.py": "",
            "search/worker/files.py": "from search.report.build import x\n",
            "search/report/__init__.py": "",
            "search/report/build.py": "from ..shared import spec\n",
            "search/shared/__init__.py": "",
            "search/shared/spec.py": "",
        },
    )
    graph = import_graph(tmp_path)
    wrong = upward_imports(graph)
    assert wrong == [
        "search.worker.files:1 imports search.report.build "
        "(search.report is not below search.worker)",
        "trainables.core.config:1 imports trainables.training.loop "
        "(trainables.training is not below trainables.core)",
    ]
    assert ("search.shared.spec", 1) in graph["search.report.build"]  # relative, resolved


@pytest.mark.parametrize(
    "module", ["search.report.build", "search.report.__main__", "search.experiment.folder"]
)
def test_reading_results_loads_neither_torch_nor_the_training_code(module):
    probe = (
        f"import sys, {module}; "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('trainables.train')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.strip() == "[]"


def test_the_search_driver_starts_without_torch():
    """`python search/run.py` imports the driver (the CLI, the stages, the Tune trainable it
    hands Ray) without torch: a start that fails on bad input exits in a second, and torch is
    loaded only where the driver meets a network (counting a mask's parameters) or in a trial."""
    probe = (
        "import sys, search.cli, search.worker.trainable; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'segmentation_models_pytorch', 'albumentations')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.strip() == "[]"
