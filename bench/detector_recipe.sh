#!/usr/bin/env bash
# The shipped detector's recipe, step by step; every step resumes where a killed run stopped.
#   bash bench/detector_recipe.sh [WORK] [ARTIFACT] [EPOCHS] [OPTIMIZER] [LR]
# WORK (default ~/swapscope-detector) holds the face sets and the training run; the sample data
# is ../shared/data (SWAPSCOPE_SHARED_DATA overrides). Never dev_eval or dev_fakes: those
# validate, they never train.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${SWAPSCOPE_SHARED_DATA:-../shared/data}
WORK=${1:-$HOME/swapscope-detector}
ARTIFACT=${2:-sbi}
EPOCHS=${3:-30}
OPTIMIZER=${4:-adamw}
LR=${5:-0.0001}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$WORK"

# Real faces of every real clip and photo in the sample data, one face set per person.
bash bench/sample_faces.sh "$WORK"

# Train (resumes), then export the best epoch as fp16.
RUN="$WORK/run_${ARTIFACT}_${OPTIMIZER}"
$PY -m detect train "$WORK"/faces_* --artifact "$ARTIFACT" --epochs "$EPOCHS" --batch-size 32 \
  --stride 3 --optimizer "$OPTIMIZER" --lr "$LR" --lr-decay 0.95 --val-fraction 0.2 \
  --keep-every 5 --workers 1 --out "$RUN" --json > "$RUN.json"

# The shipped default (detect/weights/fwa_sbi_lite0 is a copy of WORK/fwa_sbi_lite0): the FWA
# detector that shipped first and this run's best epoch, averaged per face, one fp16 checkpoint,
# its threshold chosen on degraded real clips of people neither member trained on.
$PY -m detect ensemble detect/weights/fwa_lite0 "$RUN/best" --out "$WORK/fwa_sbi_lite0" --overwrite
faces=()
for set in "$WORK"/faces_*; do faces+=(--faces "$set"); done
$PY -m detect calibrate "$WORK/fwa_sbi_lite0" "${faces[@]}" --work "$WORK/calibration"
