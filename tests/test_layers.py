"""The package's import graph has no cycle (module-level and function-level imports alike), and
the low layers stay low: the run folder, files and names import no torch, no env and no stage."""
import ast
import subprocess
import sys
from pathlib import Path

import worldmodels

ROOT = Path(worldmodels.__file__).parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules:  # worldmodels.x.y -> the module that defines it
                    target = target.rpartition(".")[0]
                if target.startswith("worldmodels") and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def reachable(graph, start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_no_import_cycle():
    graph = import_graph()
    assert "worldmodels.hooks.live" in graph["worldmodels.hooks"]  # the graph sees lazy imports
    assert find_cycle(graph) is None


def test_a_cycle_is_found():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_low_layers_stay_low():
    graph = import_graph()
    for low in ("worldmodels.runfolder", "worldmodels.fileio", "worldmodels.names", "worldmodels.errors"):
        assert reachable(graph, low) <= {"worldmodels.errors", "worldmodels.fileio", "worldmodels.names"}, low
    # nothing below the loop imports the loop
    assert not any("worldmodels.curriculum" in reachable(graph, m) for m in graph
                   if m.startswith(("worldmodels.hooks", "worldmodels.stages", "worldmodels.engine")))


def test_viewer_is_shared_and_low():
    """wm-play and --live draw with viewer.py; it knows neither of them nor the loop."""
    graph = import_graph()
    assert "worldmodels.viewer" in graph["worldmodels.play"] and "worldmodels.viewer" in graph["worldmodels.hooks.live"]
    assert "worldmodels.play" not in graph["worldmodels.hooks.live"]
    assert not {m for m in reachable(graph, "worldmodels.viewer")
                if m.startswith(("worldmodels.play", "worldmodels.hooks", "worldmodels.curriculum",
                                 "worldmodels.stages", "worldmodels.selection"))}


def test_only_selection_writes_best_pt():
    """best.pt has one writer: every save_torch call whose target names best is in selection.py,
    and selection knows nothing of the loop that calls it (no hooks, no curriculum)."""
    writers = set()
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "save_torch"
                    and node.args and "best" in ast.unparse(node.args[0])):
                writers.add(module_name(path))
    assert writers == {"worldmodels.selection"}
    assert not {m for m in reachable(import_graph(), "worldmodels.selection")
                if m.startswith(("worldmodels.hooks", "worldmodels.curriculum", "worldmodels.stages"))}


def test_importing_the_package_loads_no_renderer():
    """`import worldmodels` (config, the CLI's parser) stays light: the CarRacing id is registered
    by name, so pygame, Box2D and OpenCV load only when an env is made or a frame is drawn."""
    code = ("import worldmodels, worldmodels.config, worldmodels.cli; import sys; "
            "print(sorted(m for m in ('pygame','Box2D','cv2') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=ROOT.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
