"""EnvContext is what context.StageContext and context.HookContext describe: every member the
Protocols declare is there (a method where they declare one), and the stages, hooks and
selection reach it only through those names."""
import ast
import inspect
from pathlib import Path
from typing import Protocol

import worldmodels
from worldmodels.config import build_config
from worldmodels.context import EnvInfo, HookContext, StageContext
from worldmodels.curriculum import EnvContext, Run


def members(proto) -> dict[str, str]:
    """name -> "field" (writable), "property" (read-only) or "method", over the Protocol and
    the Protocols it extends."""
    found: dict[str, str] = {}
    for cls in reversed(proto.__mro__):
        if cls is Protocol or not getattr(cls, "_is_protocol", False):
            continue
        found.update(dict.fromkeys(cls.__dict__.get("__annotations__", {}), "field"))
        for name, value in cls.__dict__.items():
            if not name.startswith("_") and (inspect.isfunction(value) or isinstance(value, property)):
                found[name] = "method" if inspect.isfunction(value) else "property"
    return found


def test_env_context_has_every_member_of_the_protocols(tmp_path):
    run = Run(build_config(["smoke"], ["envs=pong", "workers=1"]), tmp_path / "run", ["test"], log_fn=lambda m: None)
    try:
        ctx = EnvContext(run, "ALE/Pong-v5")
        for proto in (StageContext, HookContext):
            for name, kind in members(proto).items():
                assert hasattr(ctx, name), (proto.__name__, name)
                assert callable(getattr(ctx, name)) or kind != "method", (proto.__name__, name)
    finally:
        run.close()


def test_stages_hooks_and_selection_use_only_what_their_context_declares():
    root = Path(worldmodels.__file__).parent
    contexts = {"stages": members(StageContext), "hooks": members(HookContext), "selection.py": members(HookContext)}
    assert set(members(EnvInfo)) <= set(contexts["stages"]) & set(contexts["hooks"])
    for part, declared in contexts.items():
        writable = {name for name, kind in declared.items() if kind == "field"}
        for path in [root / part] if part.endswith(".py") else sorted((root / part).glob("*.py")):
            nodes = [node for node in ast.walk(ast.parse(path.read_text()))
                     if isinstance(node, ast.Attribute) and getattr(node.value, "id", None) == "ctx"]
            used = {node.attr for node in nodes}
            assert used <= set(declared), (path.name, sorted(used - set(declared)))
            written = {node.attr for node in nodes if isinstance(node.ctx, (ast.Store, ast.Del))}
            assert written <= writable, (path.name, sorted(written - writable))


def test_no_stage_is_special_cased_by_its_name():
    """The generation stage is asked for with stages.produces_generations, not by comparing names."""
    root = Path(worldmodels.__file__).parent
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                names = {getattr(n, "id", getattr(n, "attr", None)) for n in sides}
                assert not ("stage" in names and any(getattr(n, "value", None) == "controller" for n in sides)), \
                    (path.name, node.lineno)
