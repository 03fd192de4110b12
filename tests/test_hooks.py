

from worldmodels.agent import CONFIRM_SEED_START, FINAL_SEED_START, SNAPSHOT_SEED_START
from worldmodels.config import build_config
from worldmodels.curriculum import Run
from worldmodels.hooks import EarlyStopping, Hook, default_hooks
from worldmodels.stages import StepReport


class FakeCtx:
    def __init__(self):
        self.should_stop, self.stop_reason, self.early_stopped = False, None, False

    def stop(self, reason):
        self.should_stop = True
        self.stop_reason = self.stop_reason or reason


def feed(hook, ctx, fitnesses, start=0):
    for i, f in enumerate(fitnesses, start):
        hook.on_step_end(ctx, "controller", StepReport("controller", i, {"best_fitness": f}))
        if ctx.should_stop:
            return i
    return None


def test_early_stopping_records_why_and_survives_a_resume():
    ctx = FakeCtx()
    hook = EarlyStopping(patience=3)
    assert feed(hook, ctx, [1.0, 2.0, 2.0, 1.5]) is None  # wait = 2
    saved = hook.state_dict()
    resumed = EarlyStopping(patience=3)
    resumed.load_state_dict(saved)
    ctx2 = FakeCtx()
    assert feed(resumed, ctx2, [1.9], start=4) == 4  # the count carried over: 3 without improvement
    assert ctx2.early_stopped and "3 generations" in ctx2.stop_reason and "generation 1" in ctx2.stop_reason
    # a resumed run that had already stopped stops again at once
    again = EarlyStopping(patience=3)
    again.load_state_dict(resumed.state_dict())
    ctx3 = FakeCtx()
    again.on_stage_start(ctx3, "controller")
    assert ctx3.should_stop


def test_patience_zero_never_stops():
    ctx = FakeCtx()
    assert feed(EarlyStopping(patience=0), ctx, [1.0] + [0.0] * 50) is None


class Recording(Hook):
    name = "recording"

    def __init__(self):
        self.calls = []
        self.saw_eval = []

    def on_run_start(self, run):
        self.calls.append("run_start")

    def on_env_start(self, ctx):
        self.calls.append(f"env_start {ctx.spec.slug}")

    def on_stage_start(self, ctx, stage):
        self.calls.append(f"stage_start {stage}")

    def on_step_end(self, ctx, stage, report):
        if stage == "controller":
            self.saw_eval.append("eval" in report.metrics)

    def on_stage_end(self, ctx, stage):
        self.calls.append(f"stage_end {stage}")

    def on_env_end(self, ctx):
        self.calls.append("env_end")

    def on_run_end(self, run):
        self.calls.append("run_end")


def test_hooks_run_in_order_around_every_stage(tmp_path):
    cfg = build_config(["smoke"], ["envs=pong", "max_gens=3", "eval_every=2", "workers=1"])
    recording = Recording()
    hooks = default_hooks(cfg) + [recording]
    Run(cfg, tmp_path / "run", ["test"], hooks=hooks, log_fn=lambda m: None).run()
    stages = ["collect", "vae", "encode", "mdnrnn", "controller"]
    expected = ["run_start", "env_start pong"]
    for s in stages:
        expected += [f"stage_start {s}", f"stage_end {s}"]
    assert recording.calls == expected + ["env_end", "run_end"]
    # EvalSnapshot runs before later hooks and shares its numbers through report.metrics
    assert recording.saw_eval == [True, False, True]
    assert sorted(p.name for p in (tmp_path / "run" / "pong" / "eval").iterdir()) == ["gen_0000.json", "gen_0002.json"]


def test_snapshots_use_the_eval_renderer_and_a_target_is_confirmed_on_the_official_env():
    import numpy as np

    from worldmodels.hooks import EvalSnapshot

    class Ctx(FakeCtx):
        spec = type("Spec", (), {"target": 5.0, "slug": "carracing"})()

        def __init__(self):
            super().__init__()
            self.calls, self.logs, self.seeds = [], [], []

        def evaluate(self, params, episodes, seed_start, renderer="official"):
            self.calls.append((episodes, renderer))
            self.seeds.append(seed_start)
            return {"mean": 9.0, "std": 0.0, "episodes": episodes, "renderer": renderer}

        def log(self, msg):
            self.logs.append(msg)

    ctx = Ctx()
    hook = EvalSnapshot(every=1, episodes=8, confirm_episodes=100, renderer="fast")
    hook.on_step_end(ctx, "controller", StepReport("controller", 0, {"best_fitness": 1.0}, total=3,
                                                   extra={"best_params": np.zeros(4)}))
    assert ctx.calls == [(8, "fast"), (100, "official")]
    # snapshots and the confirmation are part of training: neither looks at the final seeds
    assert ctx.seeds == [SNAPSHOT_SEED_START, CONFIRM_SEED_START]
    assert SNAPSHOT_SEED_START + 10_000 < CONFIRM_SEED_START < CONFIRM_SEED_START + 10_000 < FINAL_SEED_START
    assert hook.best["renderer"] == "fast" and ctx.should_stop  # confirmed on the official env
    assert build_config(["smoke"], []).eval.renderer == "fast"
