#!/usr/bin/env bash
# Issue 16 closing note: the collapse preset (configs/cpu/collapse.yaml) at a reduced budget, five-piece vs
# single-token tool tags, one seed. Two runs side by side, one torch thread each (2 shared cores).
set -euo pipefail
BUDGET=(--set steps=6 --set warmup_tasks=16 --set eval.n_tasks=4 --set eval.every=0 --set checkpoint_every=6)
for form in five:false single:true; do
  name=${form%%:*}; flag=${form##*:}
  OMP_NUM_THREADS=1 .venv/bin/toolrl train configs/cpu/collapse.yaml "${BUDGET[@]}" \
    --set run_dir=runs/cmp16t-$name --set model.single_token_tags=$flag > runs/cmp16t-$name.out 2>&1 &
done
wait
