#!/usr/bin/env bash
# Model-made fakes for detector training: the forge's own face swaps of the sample data's lp_*
# performers (the people its card allows swap training on), one forge dataset per pair.
#   bash bench/forged_fakes.sh [WORK] [STEPS] [SIZE] [GAN] [PAIRS]
# WORK (default ~/swapscope-forged) gets, per pair, the two face sets, the swap model and a
# labelled forge dataset whose manifest `detect train --fakes WORK/set_A_B` reads (swapped faces
# as fakes, their real counterparts as reals). Every step resumes where a killed run stopped.
# SIZE: the model's face size (64; 128 is about 3x the time a step); GAN: "gan" adds the CycleGAN
# terms after 500 steps of reconstruction (default "no-gan"); PAIRS: only the first N pairs.
# Nothing here may be published: these are swaps of people in the sample data (its card).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${SWAPSCOPE_SHARED_DATA:-../shared/data}
WORK=${1:-$HOME/swapscope-forged}
STEPS=${2:-2000}
SIZE=${3:-64}
GAN=${4:-no-gan}
PAIRS_WANTED=${5:-4}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$WORK"
# pairs of similar framing and look, so that each model's swaps are plausible both ways
PAIRS=("lp_d6_woman_hairbun lp_d3_woman_hoops" "lp_d9_man_glasses lp_d13_man_glasses_office"
       "lp_d12_man_glasses_curly lp_d19_man_glasses_hoodie" "lp_d0_man_greenscreen lp_d18_man_grey_bg")
for pair in "${PAIRS[@]:0:$PAIRS_WANTED}"; do
  read -r a b <<< "$pair"
  for person in "$a" "$b"; do
    [ -f "$WORK/faces_$person/faceset.json" ] || \
      $PY -m forge extract "$DATA/real_videos/$person" --out "$WORK/faces_$person" --every 2
  done
  # by default reconstruction only (no CycleGAN terms): soft 64 px swaps, the classic
  # autoencoder look
  $PY -m forge train "$WORK/faces_$a" "$WORK/faces_$b" --out "$WORK/model_${a}_$b" \
    --arch swap-ae-lite --size "$SIZE" --batch-size 16 --steps "$STEPS" --"$GAN" \
    --gan-warmup 500 --stride 2 --save-every 250 --preview-every 250 \
    --json > "$WORK/model_${a}_$b.json"
  # both people's clips, each swapped into both identities (a swap and a reconstruction), with
  # either blend and either colour transfer: 16 fakes and 2 real counterparts, 60 frames each
  cat > "$WORK/set_${a}_$b.toml" <<EOF
out = "set_${a}_$b"
videos = ["$(realpath "$DATA/real_videos/$a")", "$(realpath "$DATA/real_videos/$b")"]
max_frames = 60
splits = {train = 1.0}
[sweep]
model = ["model_${a}_$b"]
to = ["a", "b"]
blend = ["alpha", "poisson"]
colour = ["reinhard", "histogram"]
EOF
  $PY -m forge dataset "$WORK/set_${a}_$b.toml" --device cpu --json > "$WORK/set_${a}_$b.json"
done
