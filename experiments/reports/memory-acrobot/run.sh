#!/bin/sh
# Issue 36's new-user case for the memory model on Acrobot-v1 (run from the repository root, resumable):
# 12 random episodes of 150 steps, a VAE of 8 latents trained 3 epochs, then train-memory four ways: its defaults,
# the defaults before 2026-12-07 (--sample-latents --no-start-as-copy), and each change alone.
#   sh experiments/reports/memory-acrobot/run.sh [OUT]     (OUT defaults to runs/memory-acrobot)
set -e
OUT=${1:-runs/memory-acrobot}
PY=${PYTHON:-.venv/bin/python}
REC=experiments/reports/memory-acrobot/records
[ -e "$OUT/data/manifest.json" ] || $PY -m worldmodel collect Acrobot-v1 --out "$OUT/data" --episodes 12 --max-steps 150 --seed 0
[ -e "$OUT/vae/summary.json" ] || $PY -m worldmodel train-vae "$OUT/data" --out "$OUT/vae" --latent-dim 8 --epochs 3 --no-progress
for arm in new: old:--sample-latents,--no-start-as-copy sample:--sample-latents nocopy:--no-start-as-copy; do
  name=${arm%%:*}; flags=$(echo "${arm#*:}" | tr , ' ')
  [ -e "$OUT/memory-$name/summary.json" ] || $PY -m worldmodel train-memory "$OUT/data" --vae "$OUT/vae/best.safetensors" \
    --out "$OUT/memory-$name" --no-progress $flags
done
mkdir -p "$REC"
cp "$OUT/vae/summary.json" "$REC/vae.summary.json"; cp "$OUT/vae/config.json" "$REC/vae.config.json"
for name in new old sample nocopy; do
  cp "$OUT/memory-$name/summary.json" "$REC/memory-$name.summary.json"
  cp "$OUT/memory-$name/config.json" "$REC/memory-$name.config.json"
done
