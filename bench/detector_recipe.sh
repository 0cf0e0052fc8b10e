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

# Real faces of every real clip and photo in the sample data. Each file is labelled by its folder
# (one person); two people appear under two names and are given one, so the validation split,
# which holds out whole identities, never sees a face it trained on.
same_person() {  # FOLDER -> the label it shares with another folder
  case "$1" in
    vexpress_aoc) echo hdtf_WDA_AlexandriaOcasioCortez ;;
    fr_alex_lacamoire) echo facerec_hamilton ;;
    *) echo "" ;;
  esac
}
extract() {  # OUT INPUT... [forge extract options after --]
  $PY -m forge extract "$@"
}
# Faces the default (HOG on a 480 px copy, faces of 64 px and up) misses: a crowd with 50-90 px
# faces in 1080p (HOG on a 2x copy finds them) and a man whose head is turned as he walks (dlib's
# CNN detector finds it).
videos=()
for dir in "$DATA"/real_videos/*/ "$DATA"/real_videos_extra/*/; do
  name=$(basename "$dir"); label=$(same_person "$name")
  if [ "$name" = facenet_crowd-opera ]; then
    extract "$dir" --out "$WORK/faces_$name" --every 3 --detect-size 2160 --min-size 40
  elif [ "$name" = taehyunan_man-beard ]; then
    extract "$dir" --out "$WORK/faces_$name" --every 3 --backend dlib-cnn --detect-every 1
  elif [ -n "$label" ]; then
    extract "$dir" --out "$WORK/faces_$name" --label "$label" --every 3
  else
    videos+=("$dir")
  fi
done
extract "${videos[@]}" --out "$WORK/faces_videos" --every 3
photos=()
for dir in "$DATA"/identities/*/; do
  name=$(basename "$dir"); label=$(same_person "$name")
  if [ -n "$label" ]; then
    extract "$dir" --out "$WORK/faces_$name" --label "$label"
  else
    photos+=("$dir")
  fi
done
# a few of the 92x112 ORL photos hold no face HOG can find; they are named in the log, the rest kept
extract "${photos[@]}" --out "$WORK/faces_photos" || echo "(photos without a face are left out)"

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
