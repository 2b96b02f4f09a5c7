#!/usr/bin/env bash
# The pre-registered overlap check (README, "Overlap: rollout while training"): does trainer.mode=one_step_off
# learn the default task like sync? 2 arms x seeds 1,2,3 (seed 0 not used), 40 iterations each (the default),
# the default task and config otherwise (no CPU pinning: the learning curve depends on the mode, not on where
# the actors run). Sequential; ~25 min on 2 cores. Usage: bash launch/overlap_study.sh [OUT_DIR]
# (default runs/study_overlap)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/study_overlap}
PY=${PY:-.venv/bin/python}
COMMON=(trainer.seed=1,2,3 'model.path=artifacts/tiny-model-seed${trainer.seed}' tracking.progress=false)
rc=0
$PY -m ascl_ray.cli train -m "${COMMON[@]}" trainer.mode=sync hydra.sweep.dir="$OUT/sync" || rc=1
$PY -m ascl_ray.cli train -m "${COMMON[@]}" trainer.mode=one_step_off hydra.sweep.dir="$OUT/one_step_off" || rc=1
$PY -m ascl_ray.cli compare "$OUT/sync" "$OUT/one_step_off" --last 5 --out "$OUT" --group-by trainer.mode
exit $rc
