#!/usr/bin/env bash
# The pre-registered IFPO study (README, "Study: does IFPO keep consultation targeted?").
# 5 arms x seeds 1,2,3 (seed 0 was used while designing the task and choosing defaults: not reported
# as evidence), 40 iterations each (the default), the default gray-zone task. Sequential; ~45-60 min
# on 2 cores. Usage: bash launch/ifpo_study.sh [OUT_DIR]   (default runs/study_ifpo)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/study_ifpo}
PY=${PY:-.venv/bin/python}
COMMON=(trainer.seed=1,2,3 'model.path=artifacts/tiny-model-seed${trainer.seed}' tracking.progress=false)
rc=0
$PY -m ascl_ray.cli train -m "${COMMON[@]}" algorithm=grpo hydra.sweep.dir="$OUT/grpo" || rc=1
$PY -m ascl_ray.cli train -m "${COMMON[@]}" algorithm=ifpo algorithm.options.apply_to=all \
    algorithm.options.freq_scope=group,batch,ema hydra.sweep.dir="$OUT/ifpo_all" || rc=1
$PY -m ascl_ray.cli train -m "${COMMON[@]}" algorithm=ifpo algorithm.options.apply_to=positive_only \
    algorithm.options.freq_scope=group hydra.sweep.dir="$OUT/ifpo_positive_only" || rc=1
$PY -m ascl_ray.cli compare "$OUT/grpo" "$OUT/ifpo_all" "$OUT/ifpo_positive_only" --last 5 --out "$OUT" \
    --group-by algorithm.name,algorithm.options.freq_scope,algorithm.options.apply_to
exit $rc
