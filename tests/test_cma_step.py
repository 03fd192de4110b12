"""controller.min_rel_step: a floor on CMA-ES's step relative to its mean, for argmax controllers
whose fitness does not change when every parameter is scaled."""
import math

import cma
import numpy as np

from worldmodels.config import build_config
from worldmodels.curriculum import Run
from worldmodels.fileio import read_csv_rows
from worldmodels.stages.controller import floor_rel_step, rel_step


def argmax_task(seed: int = 0, n_in: int = 40, n_out: int = 4, n: int = 300):
    """Fitness = accuracy of argmax(W x + b) against a hidden linear labeller: scale-invariant."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_in))
    labels = (x @ rng.normal(size=(n_out, n_in)).T).argmax(1)

    def accuracy(p: np.ndarray) -> float:
        w, b = p[: n_out * n_in].reshape(n_out, n_in), p[n_out * n_in:]
        return float(((x @ w.T + b).argmax(1) == labels).mean())

    return accuracy, n_out * n_in + n_out


def search(floor: float, gens: int = 150, seed: int = 1):
    accuracy, n = argmax_task()
    es = cma.CMAEvolutionStrategy(np.zeros(n), 0.1, {"popsize": 16, "seed": seed, "verbose": -9})
    noise = np.random.default_rng(seed)
    ratios = []
    for _ in range(gens):
        xs = es.ask()
        es.tell(xs, [-(accuracy(np.asarray(p)) + noise.normal(0, 0.02)) for p in xs])
        floor_rel_step(es, floor)
        ratios.append(rel_step(es))
    return ratios, accuracy(np.asarray(es.mean))


def test_floor_keeps_the_relative_step_and_is_off_at_zero():
    free, _ = search(0.0)
    floored, _ = search(0.3)
    assert min(floored) >= 0.3 * (1 - 1e-9)
    assert free[-1] < 0.3  # without the floor the relative step collapses on this task
    assert free[-1] < free[0] / 3


def test_floor_raises_sigma_only_when_below():
    es = cma.CMAEvolutionStrategy(np.full(100, 2.0), 0.01, {"popsize": 8, "seed": 3, "verbose": -9})
    assert not floor_rel_step(es, 0.0) and es.sigma == 0.01
    assert floor_rel_step(es, 0.5)
    assert math.isclose(es.sigma * math.sqrt(100) / np.linalg.norm(es.mean), 0.5)
    assert not floor_rel_step(es, 0.4)  # already above: unchanged
    assert math.isclose(rel_step(es), 0.5)
    spread = np.asarray(es.ask()).std(axis=0).mean()
    assert 0.7 < spread < 1.3  # the next population is drawn with the raised sigma (1.0)


def test_controller_stage_applies_the_floor(tmp_path):
    cfg = build_config(["smoke"], ["envs=pong", "workers=1", "max_gens=3", "controller.min_rel_step=2.0"])
    Run(cfg, tmp_path / "run", ["test"], log_fn=lambda line: None).run()
    rows = read_csv_rows(tmp_path / "run" / "pong" / "metrics.csv")
    assert [int(r["gen"]) for r in rows] == [0, 1, 2]
    assert all(float(r["rel_step"]) >= 2.0 * (1 - 1e-6) for r in rows)
