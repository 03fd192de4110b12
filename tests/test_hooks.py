import dataclasses

from worldmodels.agent import CONFIRM_SEED_START, FINAL_SEED_START, SNAPSHOT_SEED_START
from worldmodels.config import build_config
from worldmodels.curriculum import Run
from worldmodels.hooks import EarlyStopping, Hook, default_hooks
from worldmodels.runfolder import EnvFolder
from worldmodels.stages import StepReport


class FakeCtx:
    round = 0

    def __init__(self):
        self.should_stop, self.stop_reason, self.early_stopped = False, None, False
        self.status, self.best_eval, self.final_eval = "running", None, None

    def stop(self, reason):
        self.should_stop = True
        self.stop_reason = self.stop_reason or reason

    def stop_early(self, reason):
        self.early_stopped = True
        self.stop(reason)

    def mark_solved(self):
        self.status = "solved"

    def record_best(self, best):
        self.best_eval = best

    def record_final(self, result):
        self.final_eval = result


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
    env = tmp_path / "run" / "pong"
    assert sorted(p.name for p in (env / "eval").iterdir()) == ["gen_0000.json", "gen_0002.json", "pick_round0.json"]
    # the pick at the end of the stage: best.pt holds the finalist it kept, whose score over the
    # pick's episodes and seeds a fresh evaluation of best.pt reproduces
    import json

    from worldmodels.agent import PICK_SEED_START, Agent, evaluate
    from worldmodels.checkpoint import load_bundle

    pick = json.loads((env / "eval" / "pick_round0.json").read_text())
    assert pick["episodes"] == 2 and pick["seed_start"] == PICK_SEED_START and len(pick["finalists"]) >= 2
    kept = next(f for f in pick["finalists"] if f["label"] == pick["kept"])
    assert kept["mean"] == max(f["mean"] for f in pick["finalists"])
    bundle = load_bundle(env / "best.pt")
    assert bundle["eval"]["snapshot"]["mean"] == kept["mean"] and bundle["eval"]["snapshot"]["picked"]
    agent, params = Agent.from_bundle(bundle)
    again = evaluate(agent, params, 2, PICK_SEED_START, "cpu", workers=1, max_steps=cfg.eval.max_steps)
    assert again["scores"] == kept["scores"]


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


def test_with_stop_at_target_off_a_confirmed_target_is_recorded_and_training_goes_on(tmp_path):
    from worldmodels.checkpoint import load_bundle
    from worldmodels.hooks import EvalSnapshot

    snaps = {0: 9.0, 1: 12.0, 2: 3.0}  # snapshot means of params 0..2; the target is 5
    ctx, params = _pick_ctx(tmp_path, {0: 9.0, 1: 12.0, 2: 3.0, 4: 10.0})
    ctx.spec = dataclasses.replace(ctx.spec, target=5.0)  # the real Pong spec, a reachable target
    ctx.status = "running"
    pick_evaluate = ctx.evaluate
    ctx.calls = []
    ctx.evaluate = lambda p, e, s, renderer="official", agent=None: ctx.calls.append((int(p[0]), e, s)) or {
        "mean": snaps[int(p[0])], "std": 0.0, "episodes": e, "renderer": renderer}
    hook = EvalSnapshot(every=1, episodes=8, confirm_episodes=100, finalists=3, pick_episodes=32,
                        stop_at_target=False)
    for gen in range(3):
        hook.on_step_end(ctx, "controller", StepReport("controller", gen, {}, total=3,
                                                       extra={"best_params": params(gen), "mean_params": params(4)}))
        assert not ctx.should_stop
    # one confirmation (gen 0); gen 1's better snapshot is not confirmed again
    assert ctx.calls == [(0, 8, SNAPSHOT_SEED_START), (0, 100, CONFIRM_SEED_START), (1, 8, SNAPSHOT_SEED_START),
                         (2, 8, SNAPSHOT_SEED_START)]
    assert hook.solved and ctx.status == "solved" and hook.best["gen"] == 1
    hook.on_stage_start(ctx, "controller")  # a later round or a rerun is not stopped either
    assert not ctx.should_stop
    # the pick still runs among the finalists; with the stop on, a solved env skips it
    ctx.evaluate, ctx.calls = pick_evaluate, []
    hook.on_stage_end(ctx, "controller")
    assert [c[0] for c in ctx.calls] == [0, 1, 2, 4] and (tmp_path / "eval" / "pick_round0.json").exists()
    stopping = EvalSnapshot(every=1, episodes=8, confirm_episodes=100, finalists=3, pick_episodes=32)
    stopping.load_state_dict(hook.state_dict())
    ctx.calls = []
    stopping.on_stage_end(ctx, "controller")
    stopping.on_stage_start(ctx, "controller")
    assert ctx.calls == [] and ctx.should_stop
    assert int(load_bundle(tmp_path / "best.pt")["controller"]["params"][0]) == 1  # the pick kept gen 1


def _pick_ctx(tmp_path, scores):
    """A FakeCtx with a real best.pt whose evaluate() scores a controller by scores[first param]."""
    import numpy as np

    from worldmodels.agent import Agent
    from worldmodels.checkpoint import save_torch
    from worldmodels.envs import probe_spec

    agent = Agent.build(probe_spec("ALE/Pong-v5"), z_dim=4, hidden=8, gaussians=2)
    n = agent.controller.n_params

    class Ctx(FakeCtx):
        spec = agent.spec
        round = 0
        env_dir = tmp_path
        files = EnvFolder(tmp_path)

        def __init__(self):
            super().__init__()
            self.calls, self.logs = [], []

        def evaluate(self, params, episodes, seed_start, renderer="official", agent=None):
            key = int(round(float(np.asarray(params)[0])))
            self.calls.append((key, episodes, seed_start, renderer, agent is not None))
            return {"mean": float(scores[key]), "std": 0.0, "episodes": episodes, "renderer": renderer,
                    "scores": [float(scores[key])] * episodes}

        def load_agent(self):
            return agent

        def provenance(self, gen):
            return {"gen": gen}

        def interrupted(self):
            return False

        def log(self, msg):
            self.logs.append(msg)

    def params(k):
        p = np.zeros(n)
        p[0] = k
        return p

    save_torch(tmp_path / "best.pt", agent.bundle(params(0), {"snapshot": {"gen": 0, "mean": 9.0}, "final": None},
                                                  {"gen": 0}))
    return Ctx(), params


def test_the_pick_scores_finalists_on_their_own_seeds_and_keeps_the_best(tmp_path):
    import json

    import numpy as np

    from worldmodels.agent import PICK_SEED_START
    from worldmodels.checkpoint import load_bundle
    from worldmodels.hooks import EvalSnapshot

    # snapshots (8 episodes) said 9, 7, 8, 1 for params 0..3; over 32 episodes they score 5, 6, 4, 0,
    # and the CMA-ES mean (params 4) 6.5
    snap_means, pick_means = {0: 9.0, 1: 7.0, 2: 8.0, 3: 1.0}, {0: 5.0, 1: 6.0, 2: 4.0, 3: 0.0, 4: 6.5}
    ctx, params = _pick_ctx(tmp_path, pick_means)
    ctx.evaluate_snap = ctx.evaluate
    hook = EvalSnapshot(every=1, episodes=8, confirm_episodes=100, renderer="fast", finalists=3, pick_episodes=32)
    for gen in range(4):
        ctx.evaluate = lambda p, e, s, renderer="official", agent=None: {
            "mean": snap_means[int(p[0])], "std": 0.0, "episodes": e, "renderer": renderer}
        hook.on_step_end(ctx, "controller", StepReport("controller", gen, {}, total=4,
                                                       extra={"best_params": params(gen), "mean_params": params(4)}))
    assert [e["gen"] for e in hook.top] == [0, 2, 1]  # the 3 best snapshots of the round
    ctx.evaluate = ctx.evaluate_snap
    hook.on_stage_end(ctx, "controller")
    # best.pt (with its own V and M), the two other top snapshots, the CMA-ES mean: same seeds
    assert ctx.calls == [(0, 32, PICK_SEED_START, "fast", True), (2, 32, PICK_SEED_START, "fast", False),
                         (1, 32, PICK_SEED_START, "fast", False), (4, 32, PICK_SEED_START, "fast", False)]
    assert SNAPSHOT_SEED_START + 10_000 < PICK_SEED_START < PICK_SEED_START + 10_000 < CONFIRM_SEED_START
    bundle = load_bundle(tmp_path / "best.pt")
    assert int(bundle["controller"]["params"][0]) == 4  # the mean won: best.pt was rewritten with it
    assert bundle["eval"]["snapshot"]["source"] == "mean" and bundle["eval"]["snapshot"]["mean"] == 6.5
    assert hook.best["gen"] == 3 and ctx.best_eval["picked"]
    pick = json.loads((tmp_path / "eval" / "pick_round0.json").read_text())
    assert pick["kept"] == "CMA-ES mean gen 3" and [f["mean"] for f in pick["finalists"]] == [5.0, 4.0, 6.0, 6.5]
    # a rerun of the finished round (no new generation) does not pick again
    ctx.calls, hook.best = [], {"gen": 0, "mean": 9.0}
    hook.on_stage_end(ctx, "controller")
    assert ctx.calls == [] and hook.best["source"] == "mean" and int(hook.best_params[0]) == 4
    # the finalists survive a resume; a later round only picks among its own
    again = EvalSnapshot(every=1, episodes=8, confirm_episodes=100, finalists=3, pick_episodes=32)
    again.load_state_dict(json.loads(json.dumps(hook.state_dict())))
    assert [e["gen"] for e in again.top] == [0, 2, 1] and np.array_equal(again.center["params"], params(4))
    ctx.round, ctx.calls = 1, []
    again.on_stage_end(ctx, "controller")
    assert ctx.calls == []  # only best.pt is left: nothing to pick from


def test_a_tie_or_the_pick_turned_off_keeps_best_pt(tmp_path):
    from worldmodels.checkpoint import load_bundle
    from worldmodels.hooks import EvalSnapshot

    ctx, params = _pick_ctx(tmp_path, {0: 5.0, 1: 5.0, 4: 5.0})
    for finalists, pick_episodes, calls in ((0, 32, 0), (3, 0, 0), (3, 32, 3)):
        ctx.calls = []
        hook = EvalSnapshot(every=1, episodes=8, confirm_episodes=100, finalists=finalists, pick_episodes=pick_episodes)
        hook.top = [{"gen": 1, "round": 0, "mean": 3.0, "params": params(1)}]
        hook.center = {"gen": 1, "round": 0, "params": params(4)}
        hook.on_stage_end(ctx, "controller")
        assert len(ctx.calls) == calls
        assert int(load_bundle(tmp_path / "best.pt")["controller"]["params"][0]) == 0


def test_a_confirmed_target_ends_training_unless_stop_at_target_is_off(tmp_path, monkeypatch):
    """End to end on real Pong with a target any controller reaches: the stop ends the env after
    the first snapshot; a rerun of the solved run with eval.stop_at_target false trains on through
    both rounds (max_gens 2: one generation a round) and picks best.pt again."""
    import json

    import worldmodels.envs as envs

    monkeypatch.setitem(envs.TARGETS, "ALE/Pong-v5", -1000.0)
    out = tmp_path / "run"
    runs = []
    for stop in ("true", "false"):
        cfg = build_config(["smoke"], ["envs=pong", "max_gens=2", "rounds=2", "workers=1",
                                       f"eval.stop_at_target={stop}"])
        Run(cfg, out, ["test"], hooks=default_hooks(cfg), log_fn=lambda m: None).run()
        entry = json.loads((out / "curriculum_results.json").read_text())["envs"][0]
        manifest = json.loads((out / "pong" / "manifest.json").read_text())
        runs.append((entry, {(r["round"], r["stage"]) for r in manifest["records"]},
                     (out / "pong" / "eval" / "pick_round1.json").exists()))
    (entry, records, picked), (entry2, records2, picked2) = runs
    assert entry["status"] == "solved" and entry["generations"] == 1 and (1, "collect") not in records
    assert not picked
    assert entry2["status"] == "solved" and entry2["generations"] == 2 and (1, "mdnrnn") in records2 and picked2
    assert entry2["final_eval"] is not None


def test_overall_eta_on_a_resumed_run_counts_only_this_invocations_steps(monkeypatch):
    """A run resumed at 2M of 5M steps that takes 100k steps a minute has ~29 min to go, not ~0;
    steps it did not take (an env's held steps, a budget an env left unused) do not raise the rate."""
    from worldmodels.hooks import builtin

    clock = [1000.0]
    monkeypatch.setattr(builtin.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(builtin.sys.stderr, "isatty", lambda: False, raising=False)
    lines = []
    overall = builtin.Overall([5_000_000], lines.append)
    overall.jump(2_000_000)  # a stage starts on a resumed env: what the folder already holds
    clock[0] += 60
    overall.set(2_100_000)
    assert lines == ["curriculum: 2,100,000 of 5,000,000 env steps (42%), about 0.5 h to go"]
    overall.jump(3_000_000)  # the env ended short of its budget; the next one starts
    clock[0] += 60
    overall.set(3_100_000)  # 200k steps taken in 2 minutes, 1.9M to go: 19 minutes
    assert lines[-1] == "curriculum: 3,100,000 of 5,000,000 env steps (62%), about 0.3 h to go"


def test_the_banner_estimate_of_a_resume_counts_only_what_is_left():
    from worldmodels.console import env_estimate
    from worldmodels.envs import probe_spec

    cfg = build_config(flags={"max_env_steps": 2_000_000})
    spec = probe_spec("ALE/Pong-v5")
    fresh = env_estimate(cfg, spec, 2, False)
    half = env_estimate(cfg, spec, 2, False, {"env_steps": 1_000_000, "records": [{"round": 0, "stage": "vae"}]})
    assert fresh is not None and half is not None and 0 < half < fresh / 2  # half the steps, and no V
    done = {"env_steps": 2_000_000, "final_eval": {"mean": -9.0}, "records": []}
    assert env_estimate(cfg, spec, 2, False, done) == 0.0
    extended = build_config(flags={"max_env_steps": 5_000_000})
    assert env_estimate(extended, spec, 2, False, done) > 0  # a larger budget reopens it
    assert env_estimate(extended, spec, 2, False, done, gens=cfg.max_gens) == 0.0  # unless max_gens ended it
    assert env_estimate(extended, spec, 2, False, done, gens=cfg.max_gens - 1) > 0
