"""Does a trained controller carry over to another V (e.g. one fine-tuned by a later round)?

A diagnostic, not the agent: it plays an agent file's controller, weights unchanged, with its
own V and with V_FILE's in its place, and then with V_FILE's z mapped back to what the
controller's inputs were under its own V (a least-squares map fitted on frames that both Vs
encode): from the same chosen inputs, from the best-correlated new input for each, and from all
of the new z. Only for controllers on z alone (controller.use_h false, no dz or earlier actions).

    python scripts/swap_v.py AGENT_FILE V_FILE ROLLOUTS_DIR [--inputs 6,22,0,7] [--episodes 32]

AGENT_FILE: an agent (best.pt); V_FILE: a V saved by the vae stage of another run or round;
ROLLOUTS_DIR: a folder of collected rollouts (.npz with obs) to fit the maps on; --inputs: the
controller's inputs that the maps rebuild (those `moving_inputs` chose; default: all of z).
Prints the mean ± std over --episodes official games (seeds 10,000+) for each.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from worldmodels.agent import Agent, evaluate
from worldmodels.checkpoint import load_arrays, load_bundle, load_torch
from worldmodels.models.vae import frames_to_tensor


def encode_both(old: Agent, new: Agent, files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """mu of every frame of `files` under each agent's V, float64 [N, z]."""
    z_old, z_new = [], []
    with torch.no_grad():
        for path in files:
            obs = load_arrays(path, ("obs",))["obs"]
            for start in range(0, len(obs), 256):
                x = frames_to_tensor(obs[start:start + 256], "cpu")
                z_old.append(old.vae.encode(x)[0].numpy())
                z_new.append(new.vae.encode(x)[0].numpy())
    return np.concatenate(z_old).astype(np.float64), np.concatenate(z_new).astype(np.float64)


def fit_maps(z_old: np.ndarray, z_new: np.ndarray, chosen: list[int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (A [k, z], c [k]) with z_old[:, chosen] ~= z_new @ A.T + c."""
    k, dim = len(chosen), z_new.shape[1]
    ones = np.ones((len(z_new), 1))
    maps: dict[str, tuple[np.ndarray, np.ndarray]] = {"unmapped": (np.eye(dim)[chosen], np.zeros(k))}
    coef = np.linalg.lstsq(np.hstack([z_new[:, chosen], ones]), z_old[:, chosen], rcond=None)[0]
    a = np.zeros((k, dim))
    a[:, chosen] = coef[:-1].T
    maps["linear from the same inputs"] = (a, coef[-1])
    corr = np.nan_to_num(np.corrcoef(np.hstack([z_old[:, chosen], z_new]).T)[:k, k:])
    a, c = np.zeros((k, dim)), np.zeros(k)
    for row, i in enumerate(chosen):
        j = int(np.argmax(np.abs(corr[row])))
        slope, c[row] = np.linalg.lstsq(np.hstack([z_new[:, [j]], ones]), z_old[:, i], rcond=None)[0]
        a[row, j] = slope
        print(f"input {i}: best matched by new input {j} (correlation {corr[row, j]:.3f})")
    maps["affine from the best-matched input"] = (a, c)
    x = np.hstack([z_new, ones])
    coef = np.linalg.lstsq(x, z_old[:, chosen], rcond=None)[0]
    fit = x @ coef
    r2 = 1 - ((z_old[:, chosen] - fit) ** 2).mean(0) / z_old[:, chosen].var(0).clip(1e-12)
    print("R^2 of each input from all of the new z:", ", ".join(f"{i}: {v:.3f}" for i, v in zip(chosen, r2)))
    maps["linear from all of the new z"] = (coef[:-1].T, coef[-1])
    return maps


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("agent")
    p.add_argument("v_file")
    p.add_argument("rollouts")
    p.add_argument("--inputs", default="", help="comma-separated input indices (default: all of z)")
    p.add_argument("--episodes", type=int, default=32)
    p.add_argument("--max-files", type=int, default=40, help="rollouts the maps are fitted on")
    args = p.parse_args()
    files = sorted(Path(args.rollouts).glob("*.npz"))
    if not files:
        print(f"swap_v: no rollouts (.npz) in {args.rollouts}", file=sys.stderr)
        return 2
    files = [files[i] for i in np.linspace(0, len(files) - 1, min(args.max_files, len(files))).astype(int)]
    bundle = load_bundle(args.agent)
    old, params = Agent.from_bundle(bundle)
    if old.use_h or old.inputs.dz or old.inputs.prev_actions:
        print("swap_v: only a controller on z alone can be mapped (use_h false, no dz or earlier actions)",
              file=sys.stderr)
        return 2
    new, _ = Agent.from_bundle({**bundle, "vae": load_torch(args.v_file, "V")})
    chosen = [int(i) for i in args.inputs.split(",")] if args.inputs else list(range(old.vae.z_dim))
    z_old, z_new = encode_both(old, new, files)
    print(f"maps fitted on {len(z_old)} frames of {len(files)} rollouts")
    result = evaluate(old, params, args.episodes, 10_000, "cpu")
    print(f"own V: {result['mean']:.2f} ± {result['std']:.2f}", flush=True)
    w, b, *rest = old.controller.unflatten(params.reshape(1, -1))
    others = torch.ones(w.shape[-1], dtype=torch.bool)  # inputs outside the map keep their weights
    others[chosen] = False
    for name, (a, c) in fit_maps(z_old, z_new, chosen).items():
        w_chosen = w[..., chosen].double()  # C's weights on the inputs the map rebuilds
        w_new = (w_chosen @ torch.as_tensor(a)).float() + w * others
        b_new = b + (w_chosen @ torch.as_tensor(c)).float()
        mapped = old.controller.flatten(w_new, b_new, *rest).reshape(-1)
        result = evaluate(new, mapped, args.episodes, 10_000, "cpu")
        print(f"V_FILE's V, {name}: {result['mean']:.2f} ± {result['std']:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
