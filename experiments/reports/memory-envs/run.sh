#!/bin/sh
# Issue 36: the memory model against its baselines beyond Acrobot (run from the repository root, resumable).
# Pong and Breakout: atari-ball's datasets and motion-weighted VAEs (run experiments/reports/atari-ball/run.sh
# first, with the same ATARI); CarRacing-v3: 40 Brownian episodes on EnvPool and the shipped VAE. train-memory
# with its defaults (posterior means, a start at the baselines) and with the defaults before 2026-12-07
# (--sample-latents --no-start-as-copy).
#   sh experiments/reports/memory-envs/run.sh [OUT] [ATARI]   (defaults: runs/memory-envs, runs/atari)
#   python experiments/reports/memory-envs/nll_table.py           (the report's table, from the records)
set -e
OUT=${1:-runs/memory-envs}
ATARI=${2:-runs/atari}
PY=${PYTHON:-.venv/bin/python}
REC=experiments/reports/memory-envs/records
[ -e "$OUT/CarRacing-data/manifest.json" ] || $PY -m worldmodel collect CarRacing-v3 --out "$OUT/CarRacing-data" \
  --episodes 40 --policy brownian --backend envpool --n-envs 1 --seed 0 --no-progress
memory() {  # name data vae flags...
  name=$1; data=$2; vae=$3; shift 3
  r=""; [ -d "$OUT/$name" ] && r=--resume
  [ -e "$OUT/$name/summary.json" ] || $PY -m worldmodel train-memory "$data" --vae "$vae" --out "$OUT/$name" \
    --threads 1 --no-progress "$@" $r
}
for game in Pong Breakout; do
  memory "$game-memory" "$ATARI/$game-data" "$ATARI/$game-vae-motion100/best.safetensors"
  memory "$game-memory-old" "$ATARI/$game-data" "$ATARI/$game-vae-motion100/best.safetensors" \
    --sample-latents --no-start-as-copy
done
VAE=experiments/pretrained/carracing/vae.safetensors
memory CarRacing-memory "$OUT/CarRacing-data" "$VAE"
memory CarRacing-memory-old "$OUT/CarRacing-data" "$VAE" --sample-latents --no-start-as-copy
mkdir -p "$REC"
for run in "$OUT"/*-memory*; do
  [ -e "$run/summary.json" ] || continue
  name=$(basename "$run")
  cp "$run/summary.json" "$REC/$name.summary.json"; cp "$run/config.json" "$REC/$name.config.json"
done
cp "$OUT/CarRacing-data/manifest.json" "$REC/CarRacing-data.manifest.json"
