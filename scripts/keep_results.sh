#!/usr/bin/env bash
# Copy a run folder's small files into docs/results/NAME/ so the numbers in the docs come from
# files in the repository (run folders do not outlive the machine that trained them):
#   scripts/keep_results.sh RUN_DIR NAME
# Copies run.yaml, curriculum_results.json and, per env, the *metrics.csv files and eval/*.json;
# never checkpoints, data or videos.
set -euo pipefail
run=${1:?usage: scripts/keep_results.sh RUN_DIR NAME}
name=${2:?usage: scripts/keep_results.sh RUN_DIR NAME}
[[ -f $run/curriculum_results.json ]] || { echo "keep_results.sh: $run holds no run (no curriculum_results.json)" >&2; exit 2; }
dest="$(dirname "$0")/../docs/results/$name"
mkdir -p "$dest"
cp "$run/run.yaml" "$run/curriculum_results.json" "$dest/"
for env in "$run"/*/; do
  slug=$(basename "$env")
  compgen -G "$env*metrics.csv" >/dev/null || [[ -d $env/eval ]] || continue
  mkdir -p "$dest/$slug"
  cp "$env"*metrics.csv "$dest/$slug/" 2>/dev/null || true
  if [[ -d $env/eval ]]; then mkdir -p "$dest/$slug/eval"; cp "$env"/eval/*.json "$dest/$slug/eval/" 2>/dev/null || true; fi
done
echo "$dest"
