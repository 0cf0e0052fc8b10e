#!/usr/bin/env bash
# The detector recipe with genuine fakes, step by step on this machine; every step resumes where a
# killed run stopped.
#   bash bench/genuine_recipe.sh WORK [ARCH] [EPOCHS] [STEPS]
# Trains on dfdc_faces/train alone (its genuine fakes and reals, each real face also a self-blended
# (SBI) negative half the times it is drawn; never val/), both classes degraded alike, with the
# hyperparameters of the GPU ablation (bench/gpu_runs.sh) at batch 32; then puts the run's best
# epoch beside the two members of the previous default (detect/weights/fwa_sbi_lite0: FWA and SBI
# on the sample data's real faces) and calibrates the ensemble's verdict threshold on degraded real
# clips of the people none of the three trained on. The shipped default,
# detect/weights/genuine_fwa_sbi_lite0, is a copy of WORK/genuine_fwa_sbi_ARCH (card:
# data_cards/genuine_fwa_sbi_lite0.md). Never dev_eval, dev_fakes or dfdc_faces/val: those validate.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${SWAPSCOPE_SHARED_DATA:-../shared/data}
WORK=${1:?usage: genuine_recipe.sh WORK [ARCH] [EPOCHS] [STEPS]}
ARCH=${2:-tf_efficientnet_lite0}
EPOCHS=${3:-4}
STEPS=${4:-360}
PY=${PYTHON:-.venv/bin/python}

bash bench/sample_faces.sh "$WORK"
RUN="$WORK/run_genuine_sbi_$ARCH"
$PY -m detect train --crops "$DATA/dfdc_faces" --arch "$ARCH" --artifact sbi \
  --epochs "$EPOCHS" --steps-per-epoch "$STEPS" --batch-size 32 --optimizer adamw \
  --lr 0.0003 --lr-decay 0.8 --val-fraction 0.1 --keep-every 1 --workers 1 \
  --cache "$WORK/cache" --out "$RUN" --json > "$RUN.json"
ENSEMBLE="$WORK/genuine_fwa_sbi_$ARCH"
$PY -m detect ensemble "$RUN/best" detect/weights/fwa_sbi_lite0 --out "$ENSEMBLE" --overwrite
faces=()
for set in "$WORK"/faces_*; do faces+=(--faces "$set"); done
$PY -m detect calibrate "$ENSEMBLE" "${faces[@]}" --work "$WORK/calibration_genuine_fwa_sbi" --json \
  > "$ENSEMBLE.calibration.json"
