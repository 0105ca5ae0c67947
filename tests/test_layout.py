"""The package's import graph: no cycles, every import pointing down the data flow.

Every `import` statement of every module counts, those inside functions
too (a lazy import is still a dependency), read from the source with `ast`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "bimer_tf"

# The data flow, lowest first: a module may import modules of its own rank or
# lower, never higher. The longest matching prefix gives a module its rank.
RANKS = {
    "bimer_tf": 0,
    "bimer_tf.errors": 0,
    "bimer_tf.cli": 0,
    "bimer_tf.config": 1,
    "bimer_tf.layers": 2,
    "bimer_tf.pretrained": 2,
    "bimer_tf.audio": 3,
    "bimer_tf.data": 4,
    "bimer_tf.pipeline": 5,
    "bimer_tf.models": 6,
    "bimer_tf.evaluation.metrics": 7,  # the report training writes into a run directory
    "bimer_tf.training": 8,
    "bimer_tf.serving": 9,
    "bimer_tf.evaluation": 10,
    "bimer_tf.inference": 11,
    "bimer_tf.beam": 12,
    "bimer_tf.app": 13,
}
# `python -m` entry points: they import the library; nothing imports them.
COMMANDS = {
    "bimer_tf.evaluate",
    "bimer_tf.crossval",
    "bimer_tf.predict",
    "bimer_tf.timeline",
    "bimer_tf.data.augment",
    "bimer_tf.data.wav",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The bimer_tf modules `path` imports (a `from package import name` counts as the
    submodule when `name` is one)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import bimer_tf.a.b.name` -> bimer_tf.a.b
                target = target.rpartition(".")[0]
            if target.startswith("bimer_tf") and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def rank(name: str) -> int:
    prefix = max((p for p in RANKS if name == p or name.startswith(p + ".")), key=len)
    return RANKS[prefix]


def is_command(name: str) -> bool:
    return name in COMMANDS or name.endswith(".__main__")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_rank():
    unranked = [name for name in all_modules() if not any(name == p or name.startswith(p + ".") for p in RANKS)]
    assert not unranked


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_imports_point_down_the_data_flow():
    wrong = [
        f"{name} (rank {rank(name)}) imports {target} (rank {rank(target)})"
        for name, targets in import_graph().items()
        if not is_command(name)
        for target in targets
        if rank(target) > rank(name)
    ]
    assert wrong == []


def test_nothing_imports_a_command_module():
    wrong = [
        f"{name} imports {target}"
        for name, targets in import_graph().items()
        for target in targets
        if is_command(target)
    ]
    assert wrong == []


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize(
    "package",
    ["bimer_tf.data", "bimer_tf.audio", "bimer_tf.config", "bimer_tf.serving.export_dir", "bimer_tf.training.run_dir"],
)
def test_offline_tools_and_format_readers_import_without_tensorflow(package):
    """The offline data tools and the format readers load without TensorFlow
    (and importing any module changes nothing: no start-up side effects)."""
    modules = [name for name in all_modules() if name == package or name.startswith(package + ".")]
    code = (
        "import importlib, os, sys\n"
        "before = dict(os.environ)\n"
        f"for name in {modules!r}:\n"
        "    if not name.endswith('__main__'):\n"
        "        importlib.import_module(name)\n"
        "loaded = sorted(m for m in ('tensorflow', 'keras', 'keras_hub') if m in sys.modules)\n"
        "changed = sorted(k for k in set(os.environ) | set(before) if os.environ.get(k) != before.get(k))\n"
        "print(loaded, changed)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE_DIR.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[] []"
