#!/usr/bin/env bash
# The detector recipe on a CUDA machine, at a batch size and length the CPU cannot afford: the
# ablation's runs one after another, each in its time budget; as soon as each ends, its best epoch
# (fp16), history, summary and log go to $OUT as NAME.tar (so a run cut short still comes back).
#   bash bench/gpu_runs.sh stage     # first call: keep the carried gpu/a for the next call
#   bash bench/gpu_runs.sh run       # second call: train (gpu/b carried; gpu/a kept if staged)
# What it trains on is packed here by bench/gpu_pack.py (crops of dfdc_faces/train, their
# landmarks, ImageNet starts). There: no PyAV, so the degradations' codec round trips are all
# JPEG (--h264-share 0); the ImageNet start is an fp16 copy of the packages' weights (--init).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-out}
STAGED=/tmp/gpu_a
mkdir -p "$OUT"
if [ "${1:-run}" = stage ]; then
  rm -rf "$STAGED"; mkdir -p "$STAGED"; python3 -m zipfile -e gpu/a/dfdc.zip "$STAGED"
  cp gpu/a/cache.tgz "$STAGED/"; du -sh "$STAGED"
  python3 -m detect train --help > /dev/null && echo "detect imports here"; exit 0
fi
WORK=/tmp/gpu-work CACHE=/tmp/gpu-cache PART_B=/tmp/gpu_b
rm -rf "$WORK" "$CACHE" "$PART_B"; mkdir -p "$WORK" "$CACHE" "$PART_B"
python3 -m zipfile -e gpu/b/dfdc.zip "$PART_B"
crops=(--crops "$PART_B/dfdc")
tar -C "$CACHE" -xzf gpu/b/cache.tgz
if [ -d "$STAGED/dfdc" ]; then
  crops+=(--crops "$STAGED/dfdc"); tar -C "$CACHE" -xzf "$STAGED/cache.tgz"
else
  echo "part a not staged: training on part b alone"
fi
{ nvidia-smi --query-gpu=name,memory.total --format=csv || echo "no nvidia-smi"; } \
  | tee "$OUT/machine.txt"
python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)" \
  | tee -a "$OUT/machine.txt"
nproc | tee -a "$OUT/machine.txt"
EPOCHS=${EPOCHS:-5}; STEPS=${STEPS:-120}; BATCH=${BATCH:-128}; BUDGET=${BUDGET:-90}
WORKERS=${WORKERS:-15}; DEVICE=${DEVICE:-cuda}
common=(--epochs "$EPOCHS" --steps-per-epoch "$STEPS" --batch-size "$BATCH" --workers "$WORKERS"
        --optimizer adamw --lr 0.0003 --lr-decay 0.8 --val-fraction 0.1 --h264-share 0
        --cache "$CACHE" --device "$DEVICE" --json)

one() {  # NAME ARCH [detect train options]: one run in its time budget, then its results to $OUT
  local name=$1 arch=$2 started=$SECONDS
  shift 2
  timeout "$BUDGET" python3 -m detect train "${crops[@]}" --arch "$arch" "$@" \
    --init "gpu/b/init/$arch" "${common[@]}" --out "$WORK/$name" > "$WORK/$name.json" \
    2> "$WORK/$name.log" || echo "$name: stopped ($?) after $((SECONDS - started)) s"
  tail -n 3 "$WORK/$name.log"
  if [ -d "$WORK/$name/best" ]; then
    python3 -m detect export "$WORK/$name/best" --out "$WORK/$name/best16"
    cp "$WORK/$name.json" "$WORK/$name.log" "$WORK/$name/"
    tar -C "$WORK/$name" -cf "$OUT/$name.tar" best16 history.json "$name.json" "$name.log"
  fi
  echo "$name: $((SECONDS - started)) s"
}
one genuine_sbi_lite0 tf_efficientnet_lite0 --artifact sbi
one genuine_lite0 tf_efficientnet_lite0 --artifact none
one sbi_lite0 tf_efficientnet_lite0 --artifact sbi --no-genuine
one genuine_sbi_lite2 tf_efficientnet_lite2 --artifact sbi
one genuine_sbi_legacy efficientnet_lite0 --artifact sbi
ls -la "$OUT"
