#!/usr/bin/env bash
# Issue 16 closing note: the collapse preset (configs/cpu/collapse.yaml) at a much reduced budget, five-piece vs
# single-token tool tags, one seed. Two runs side by side, one torch thread each, on 2 cores shared with 3 other
# agents (load average ~10): SFT warm-up on 8 gold conversations (2 epochs = 2 optimiser steps), then 3 RL steps of
# 1 task x 4 rollouts, greedy eval on 2 held-out tasks at the end; the probe bank (32 held-out contexts) before RL and
# after every RL step.
set -euo pipefail
BUDGET=(--set steps=3 --set tasks_per_step=1 --set warmup_tasks=8 --set eval.n_tasks=2 --set eval.every=0
        --set eval.at_start=false --set checkpoint_every=3)
for form in five:false single:true; do
  name=${form%%:*}; flag=${form##*:}
  OMP_NUM_THREADS=1 .venv/bin/toolrl train configs/cpu/collapse.yaml "${BUDGET[@]}" \
    --set run_dir=runs/cmp16t-$name --set model.single_token_tags=$flag > runs/cmp16t-$name.out 2>&1 &
done
wait
