"""What a stage and a hook may ask of the env being trained: two typing Protocols.

The curriculum's EnvContext satisfies both (tests/test_context.py checks its members); tests pass
small fakes. A stage reads the env's config, spec, files and round, counts env steps, drives
its progress bar and asks whether to stop; what it produced it yields in StepReports (or writes
to the files EnvFolder names). A hook sees the same env plus what the loop records for the
results, which it changes only through the methods below (mark_solved, record_best,
record_final, stop_early), never by setting fields. Attributes written as properties here are
read-only for the caller.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .agent import Agent
    from .config import TrainConfig
    from .envs import EnvSpec
    from .runfolder import EnvFolder


class HasState(Protocol):
    """A hook as the checkpoint sees it: a name and a state that survives a resume."""

    name: str

    def state_dict(self) -> dict: ...


class EnvInfo(Protocol):
    """What stages and hooks alike read about the env and ask of the loop."""

    @property
    def cfg(self) -> TrainConfig: ...  # this env's own config (env_overrides applied)
    @property
    def spec(self) -> EnvSpec: ...
    @property
    def files(self) -> EnvFolder: ...
    @property
    def round(self) -> int: ...
    @property
    def stage(self) -> str | None: ...  # the stage running now (None between stages)
    @property
    def device(self) -> Any: ...  # torch.device
    @property
    def resume_state(self) -> dict | None: ...  # the controller's checkpoint (None: a fresh start)
    @property
    def log(self) -> Callable[[str], None]: ...

    def interrupted(self) -> bool: ...
    def stop(self, reason: str | None) -> None: ...  # None: no reason of its own (an interrupt)
    def save_manifest(self) -> None: ...  # the loop's record of progress written now
    def load_agent(self) -> Agent: ...


class StageContext(EnvInfo, Protocol):
    """What a stage needs. env_steps is the env's step counter, which the budget checks read;
    the stages that step envs add to it with count_steps as they go (a budget can end a stage
    mid-way), never by setting it."""

    @property
    def env_steps(self) -> int: ...
    @property
    def backend(self) -> Any: ...  # the engine's workers (engine.backends)
    @property
    def should_stop(self) -> bool: ...

    def progress(self, total: int, initial: int = 0) -> None: ...
    def tick(self, n: int = 1) -> None: ...
    def out_of_budget(self, extra_steps: int = 0) -> bool: ...
    def budget_reason(self, extra_steps: int = 0) -> str | None: ...
    def count_steps(self, n: int) -> None: ...  # n more env steps taken
    def recount_steps(self, since_stage_start: int) -> None: ...  # on resume: what this stage's files hold


class HookContext(EnvInfo, Protocol):
    """What a hook (and selection, which the snapshot hook and the curriculum call) needs."""

    @property
    def env_steps(self) -> int: ...
    @property
    def run_dir(self) -> Path: ...
    @property
    def env_dir(self) -> Path: ...
    @property
    def hooks(self) -> Sequence[HasState]: ...
    @property
    def manifest(self) -> Mapping[str, Any]: ...  # as last saved: what an earlier invocation recorded
    @property
    def status(self) -> str: ...  # running, solved, failed or interrupted
    @property
    def stop_reason(self) -> str | None: ...
    @property
    def final_eval(self) -> dict | None: ...
    @property
    def recipe(self) -> dict | None: ...  # {"name", "configs"} the run started from (None: given by its caller)

    def set_progress_bar(self, bar: Any) -> None: ...
    def resume_index(self, stage: str) -> int: ...
    def write_results(self) -> None: ...
    def evaluate(self, params: Any, episodes: int, seed_start: int, renderer: str = "official",
                 agent: Agent | None = None) -> dict: ...
    def provenance(self, gen: int) -> dict: ...
    def mark_solved(self) -> None: ...  # the env's target was reached and confirmed
    def record_best(self, best: dict | None) -> None: ...  # the evaluation of the controller in best.pt
    def record_final(self, result: dict | None) -> None: ...  # best.pt's final score (None: not scored)
    def stop_early(self, reason: str) -> None: ...  # stop, and end the env's training (no later round)


class RunContext(Protocol):
    """What a hook's on_run_start and on_run_end get: the run folder and each env's config."""

    @property
    def out(self) -> Path: ...
    @property
    def log(self) -> Callable[[str], None]: ...

    def env_configs(self) -> dict[str, TrainConfig]: ...


__all__ = ["EnvInfo", "HasState", "HookContext", "RunContext", "StageContext"]
