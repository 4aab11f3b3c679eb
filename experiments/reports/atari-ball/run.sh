#!/bin/sh
# Issue 36: does a 64x64 VAE keep Pong's and Breakout's ball and paddles? (run from the repository root, resumable)
# 40 random-policy episodes of each game (EnvPool, at most 1,000 agent steps each) with their RAM true state, then
# VAEs trained with train-vae's defaults but for --kl-tolerance 0.5 (at the default beta of 1 without it, Pong's VAE
# had 0 active dimensions by epoch 2) or --beta 0.01, plain and with --motion-weight. Each summary.json holds the
# linear probe from latents to the RAM state.
#   sh experiments/reports/atari-ball/run.sh [OUT]     (OUT defaults to runs/atari)
#   python experiments/reports/atari-ball/table.py     (the report's table, from the records)
set -e
OUT=${1:-runs/atari}
PY=${PYTHON:-.venv/bin/python}
REC=experiments/reports/atari-ball/records
vae() {  # name game epochs options...
  v=$OUT/$1; d=$OUT/$2-data; epochs=$3; shift 3
  r=""; { [ -e "$v/resume.safetensors" ] || [ -e "$v/last.safetensors" ]; } && r=--resume
  [ -e "$v/summary.json" ] || $PY -m worldmodel train-vae "$d" --out "$v" --epochs "$epochs" --threads 1 --no-progress "$@" $r
}
for game in Pong Breakout; do
  $PY -m worldmodel collect ALE/$game-v5 --out "$OUT/$game-data" --episodes 40 --backend envpool --n-envs 1 \
    --max-steps 1000 --seed 0
done
vae Pong-vae Pong 8 --kl-tolerance 0.5
vae Breakout-vae Breakout 8 --kl-tolerance 0.5
vae Pong-vae-motion20 Pong 5 --kl-tolerance 0.5 --motion-weight 20
vae Pong-vae-motion100 Pong 5 --kl-tolerance 0.5 --motion-weight 100
vae Pong-vae-beta0.01-motion20 Pong 5 --beta 0.01 --motion-weight 20
vae Pong-vae-beta0.01 Pong 5 --beta 0.01
vae Breakout-vae-motion100 Breakout 5 --kl-tolerance 0.5 --motion-weight 100
# A larger ball: Pong's playfield alone (rows 34-193, no score) at 96x96 grayscale; the ball is about 1x2.4 pixels
# there against 0.6x1.2 in the whole frame at 64x64
$PY -m worldmodel collect ALE/Pong-v5 --out "$OUT/Pong-crop96-data" --episodes 40 --backend envpool --n-envs 1 \
  --max-steps 1000 --seed 0 --crop 34 0 194 160 --size 96 96 --grayscale
vae Pong-crop96-vae-motion100 Pong-crop96 5 --kl-tolerance 0.5 --motion-weight 100
mkdir -p "$REC"
for v in "$OUT"/*-vae*; do
  [ -e "$v/summary.json" ] || continue
  name=$(basename "$v")
  cp "$v/summary.json" "$REC/$name.summary.json"; cp "$v/config.json" "$REC/$name.config.json"
  cp "$v/recon.png" "$REC/$name.recon.png"
done
for game in Pong Breakout Pong-crop96; do cp "$OUT/$game-data/manifest.json" "$REC/$game-data.manifest.json"; done
$PY experiments/reports/atari-ball/mlp_probe.py "$OUT/Pong-data" "$OUT/Pong-vae-motion100/best.safetensors" \
  "$OUT/Pong-vae/best.safetensors" > "$REC/mlp_probe.jsonl"
