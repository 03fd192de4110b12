"""Would a V whose z is keypoints place the ball linearly? A quick check on a run's frames.

    python scripts/keypoint_probe.py RUN_DIR pong|breakout [--keypoints K] [--batches N]

V's ConvVAE holds Breakout's ball to a fraction of a pixel, but not linearly in z (ball_probe.py:
a linear probe R^2 ~0.73, an MLP ~0.99), and C is linear in z. A spatial-softmax encoder (Finn
et al. 2016, "Deep spatial autoencoders") makes each latent an expected image coordinate, so an
object it tracks is linear in z by construction. This script trains that V (`vae.kind:
keypoints`, models/vae.py's KeypointVAE) on a run's collected frames with V's Atari loss weights
(median-frame and motion weights), apart from any run, and every `--probe-every` batches prints
ball_probe's linear probe from z on held-out frames: a few minutes to see whether the kind places
the ball before a run trains it.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import torch

from worldmodels.models.vae import KeypointVAE, frames_to_tensor, motion_weights, object_weights
from worldmodels.runfolder import RunFolder
from worldmodels.stages.vae import frame_batches, median_frame, spread


def _ball_probe():
    spec = importlib.util.spec_from_file_location("ball_probe", Path(__file__).with_name("ball_probe.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("env", choices=["pong", "breakout"])
    ap.add_argument("--keypoints", type=int, default=16)
    ap.add_argument("--batches", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--probe-every", type=int, default=500)
    ap.add_argument("--object-weight", type=float, default=10.0)
    ap.add_argument("--motion-weight", type=float, default=50.0)
    ap.add_argument("--temperature", type=float, default=10.0, help="the spatial softmax's initial sharpness")
    ap.add_argument("--sigma", type=float, default=0.3, help="the width of the decoder's blobs (frame = [-1, 1])")
    ap.add_argument("--save", type=Path, help="write the V here as a bundle section (vae_from_bundle reads it)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.keypoints < 1 or args.batches < 1 or args.batch_size < 1 or args.probe_every < 1 or args.temperature <= 0 or args.sigma <= 0:
        print("keypoint_probe: --keypoints, --batches, --batch-size and --probe-every take 1 or more, "
              "--temperature and --sigma positive numbers",
              file=sys.stderr)
        return 2
    folder = RunFolder(args.run).env_by_slug(args.env)
    files = folder.rollout_files()
    if not files:
        print(f"keypoint_probe: {folder.path} has no collected data", file=sys.stderr)
        return 2
    bp = _ball_probe()
    probe_files = [files[i] for i in spread(len(files), 140)]
    frames, where = bp.ball_frames(probe_files, bp.REGIONS[args.env])
    torch.manual_seed(args.seed)
    model = KeypointVAE(2 * args.keypoints, sigma=args.sigma, temperature=args.temperature)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    background = frames_to_tensor(median_frame(files)[None])[0]
    rng = np.random.default_rng(args.seed)
    step, start = 0, time.time()
    while step < args.batches:
        for batch, prev in frame_batches(files, args.batch_size, 32, rng, with_prev=True):
            x = frames_to_tensor(batch)
            weight = object_weights(x, background, args.object_weight)
            weight = weight + motion_weights(x, frames_to_tensor(prev), args.motion_weight)
            loss = ((model(x)[0] - x) ** 2 * weight).flatten(1).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % args.probe_every == 0 or step == args.batches:
                with torch.no_grad():
                    z = torch.cat([model.encode(frames_to_tensor(frames[i:i + 256]))[0]
                                   for i in range(0, len(frames), 256)]).numpy()
                print(f"batch {step} ({time.time() - start:.0f} s) loss {loss.item():.1f}: "
                      f"{len(frames)} ball frames, linear probe from z {bp.probe(z, where)}", flush=True)
            if step >= args.batches:
                break
    if args.save:
        torch.save({"z_dim": model.z_dim, "kind": "keypoints", "state_dict": model.state_dict()}, args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
