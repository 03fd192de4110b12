#!/usr/bin/env bash
# The commands behind the README's results table and ablations (laptop budget: 2 CPU cores,
# no GPU, the bundled `quick` config: 105 min of training + the final 100-episode evaluation).
#
#   scripts/results.sh ENV [VARIANT] [OUT] [WM-TRAIN ARGS...]
#     ENV      carracing | pong | breakout
#     VARIANT  full (default) | v-only (C sees z only, no M) | untrained-m (M keeps its random
#              initial weights) | no-dream (dream.gens=0) | dream (C's first 100 generations
#              inside M, at tau 1.15, then the real env) | one-round (rounds=1) |
#              long (training episodes of 1,000 env steps instead of 500; Atari) |
#              two-rounds (a second round collected with C after 70 generations, V fine-tuned
#              for 2 epochs, M retrained on all the data, C continued to generation 140) |
#              gpu (the GPU budget: 16 cores + 1 GPU, config default, GPU_MINUTES (default 6.5)
#              of training + the final evaluation: 8 min 17 s in all on an H200. More minutes
#              mean more generations, but a confirmation (~85 s) late in training and the final
#              evaluation come on top, and the budget's command is 10 minutes)
#     OUT      run folder (default runs/quick-ENV-VARIANT)
#     more arguments go to wm-train as they are (e.g. --set controller.groups=4)
#
# The final score (mean ± std over 100 official episodes on unseen seeds) is printed at the end
# and lands in OUT/curriculum_results.json; `wm-report OUT` makes the tables and plots, and
#   wm-play --env ENV --ckpt OUT/<env>/best.pt --episodes 100 --json
# reproduces it.
set -euo pipefail
env=${1:?usage: scripts/results.sh carracing|pong|breakout [full|v-only|untrained-m|no-dream|dream|one-round|two-rounds|long|gpu] [OUT]}
variant=${2:-full}
out=${3:-runs/quick-$env-$variant}
config=quick
case $variant in
  full) extra=() ;;
  gpu) config=default; extra=(--time-budget "${GPU_MINUTES:-6.5}" --patience 0) ;;
  v-only) extra=(--set controller.use_h=false) ;;
  untrained-m) extra=(--set mdnrnn.epochs=0) ;;
  no-dream) extra=(--set dream.gens=0) ;;
  dream) extra=(--set dream.gens=100) ;;
  one-round) extra=(--set rounds=1) ;;
  long) extra=(--set "env_overrides.$env.controller.max_steps=1000") ;;
  two-rounds) extra=(--set rounds=2 --set max_gens=140 --set vae.finetune_epochs=2) ;;
  *) echo "results.sh: unknown variant $variant" >&2; exit 2 ;;
esac
exec wm-train --envs "$env" --config "$config" --out "$out" "${extra[@]}" "${@:4}"
