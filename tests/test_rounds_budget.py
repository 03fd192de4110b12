"""Rounds, budgets and reruns: what a rerun keeps, and when no further round starts."""
import csv
import json

import pytest

from worldmodels.config import build_config
from worldmodels.curriculum import Run
from worldmodels.hooks import Hook, default_hooks
from worldmodels.runfolder import EnvFolder


class EndsTraining(Hook):
    """After round 0's controller: early stopping, or a used-up env step budget."""

    name = "ends_training"

    def __init__(self, how):
        self.how = how

    def on_stage_end(self, ctx, stage):
        if stage != "controller" or ctx.round != 0:
            return
        if self.how == "early_stop":
            ctx.stop_early("no better best fitness (test)")
        else:
            ctx.cfg.max_env_steps = 1


@pytest.mark.parametrize("how", ["early_stop", "budget"])
def test_no_round_starts_after_early_stopping_or_a_used_up_budget(tmp_path, how):
    cfg = build_config(["smoke"], ["envs=pong", "workers=1", "max_gens=4", "rounds=2"])
    Run(cfg, tmp_path / "run", ["test"], hooks=default_hooks(cfg) + [EndsTraining(how)], log_fn=lambda m: None).run()
    env = tmp_path / "run" / "pong"
    records = {(r["round"], r["stage"]) for r in json.loads((env / "manifest.json").read_text())["records"]}
    assert (0, "mdnrnn") in records and not any(r == 1 for r, _ in records)
    assert not (env / "data" / "round1").exists()
    entry = json.loads((tmp_path / "run" / "curriculum_results.json").read_text())["envs"][0]
    assert entry["final_eval"] is not None and entry["generations"] == 2
    assert entry["stop_reason"] == ("no better best fitness (test)" if how == "early_stop"
                                    else "env step budget of 1 used")


def test_a_stage_the_budget_cut_short_is_finished_by_a_rerun_with_more_budget(tmp_path):
    out = tmp_path / "run"
    sets = ["envs=pong", "workers=1", "stages=collect,vae", "vae.epochs=3"]
    Run(build_config(["smoke"], sets + ["max_env_steps=10"]), out, ["test"], log_fn=lambda m: None).run()
    env = out / "pong"

    def state():
        records = json.loads((env / "manifest.json").read_text())["records"]
        epochs = [r["epoch"] for r in csv.DictReader((env / "vae_metrics.csv").open())]
        return {r["stage"]: r.get("cut") for r in records}, epochs

    assert state() == ({"collect": True, "vae": True}, ["0"])  # the budget ends V after its first epoch
    lines = []
    Run(build_config(["smoke"], sets + ["max_env_steps=10"]), out, ["test"], log_fn=lines.append).run()
    assert any("vae already finished" in line for line in lines)  # the budget is still used up
    assert state()[1] == ["0"]
    lines.clear()
    Run(build_config(["smoke"], sets), out, ["test"], log_fn=lines.append).run()
    assert not any("already finished" in line for line in lines)
    assert state() == ({"collect": None, "vae": None}, ["0", "1", "2"])  # V resumed at its epoch 1


def test_resuming_a_later_round_keeps_the_earlier_rounds_loss_rows(tmp_path):
    from worldmodels.hooks import ArtifactWriter

    cfg = build_config(["smoke"], ["envs=pong", "workers=1", "max_gens=2", "rounds=2", "vae.epochs=2"])
    out = tmp_path / "run"
    Run(cfg, out, ["test"], log_fn=lambda m: None).run()
    env = out / "pong"
    rows = list(csv.DictReader((env / "vae_metrics.csv").open()))
    assert [(r["round"], r["epoch"]) for r in rows] == [("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")]

    class Ctx:  # a rerun about to resume round 1's V after its epoch 0
        env_dir, files, round = env, EnvFolder(env), 1

        @staticmethod
        def resume_index(stage):
            return 0

    ArtifactWriter().on_stage_start(Ctx, "vae")
    rows = list(csv.DictReader((env / "vae_metrics.csv").open()))
    assert [(r["round"], r["epoch"]) for r in rows] == [("0", "0"), ("0", "1"), ("1", "0")]


@pytest.mark.parametrize("finetune, round1_epochs", [(1, ["0"]), (0, [])])
def test_later_rounds_train_v_for_finetune_epochs(tmp_path, finetune, round1_epochs):
    """Round 1's V trains vae.finetune_epochs epochs from round 0's V; 0 keeps that V as it is."""
    import torch

    from worldmodels.checkpoint import load_torch

    cfg = build_config(["smoke"], ["envs=pong", "workers=1", "max_gens=2", "rounds=2", "vae.epochs=2",
                                   f"vae.finetune_epochs={finetune}", "stages=collect,vae"])
    out = tmp_path / "run"
    Run(cfg, out, ["test"], log_fn=lambda m: None).run()
    env = out / "pong"
    assert (env / "data" / "round1").is_dir()  # round 1 ran and collected
    rows = list(csv.DictReader((env / "vae_metrics.csv").open()))
    assert [(r["round"], r["epoch"]) for r in rows] == [("0", "0"), ("0", "1")] + [("1", e) for e in round1_epochs]
    last = load_torch(env / "vae_state.pt")["model"]  # the last epoch trained, in whichever round
    kept = load_torch(env / "vae.pt")["state_dict"]
    assert last.keys() == kept.keys() and all(torch.equal(last[k].cpu(), kept[k]) for k in kept)
