#!/usr/bin/env bash
# Face sets of every real clip and photo of the sample data, one per person (resumes: forge extract
# skips what a face set already holds).   bash bench/sample_faces.sh WORK
# The sample data is ../shared/data (SWAPSCOPE_SHARED_DATA overrides). Never dev_eval, dev_fakes
# or dfdc_faces/val: those validate, they never train.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${SWAPSCOPE_SHARED_DATA:-../shared/data}
WORK=${1:?usage: sample_faces.sh WORK}
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

