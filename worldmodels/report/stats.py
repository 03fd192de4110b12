"""Aggregate scores over runs: the interquartile mean and its stratified bootstrap interval.

The method is rliable's (Agarwal et al., "Deep RL at the Edge of the Statistical Precipice",
2021): the IQM is the mean of the middle half of the scores (scipy.stats.trim_mean with 0.25),
and its confidence interval is the percentile interval of the IQM over bootstrap resamples that
draw runs with replacement separately for each task (here: each final-evaluation episode, which
every run plays on the same seed). numpy only, with a fixed seed, so a report is reproducible.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0


def iqm(scores: ArrayLike) -> float:
    """Interquartile mean of all values: int(n/4) values cut off at each end, the rest averaged."""
    x = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    if x.size == 0:
        return float("nan")
    cut = int(0.25 * x.size)
    return float(x[cut: x.size - cut].mean())


def _iqm_rows(samples: np.ndarray) -> np.ndarray:
    """IQM of each row of a [B, n] array."""
    n = samples.shape[1]
    cut = int(0.25 * n)
    return np.sort(samples, axis=1)[:, cut: n - cut].mean(axis=1)


def stratified_bootstrap_ci(scores: ArrayLike, resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                            seed: int = SEED) -> tuple[float, float]:
    """Percentile interval of the IQM of a [runs, tasks] score matrix: each resample draws, for
    each task (column) on its own, `runs` runs with replacement (rliable's StratifiedBootstrap)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.size == 0:
        return float("nan"), float("nan")
    runs, tasks = s.shape
    rng = np.random.default_rng(seed)
    stats = np.empty(resamples)
    chunk = max(1, 2_000_000 // s.size)  # resamples per block, about 16 MB of draws at a time
    cols = np.arange(tasks)
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        rows = rng.integers(0, runs, size=(b, runs, tasks))
        stats[start: start + b] = _iqm_rows(s[rows, cols].reshape(b, runs * tasks))
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(stats, [tail, 100 - tail])
    return float(lo), float(hi)
