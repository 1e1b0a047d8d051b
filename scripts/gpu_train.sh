#!/usr/bin/env bash
# Train on a lent GPU machine inside one command (< 10 min), resuming from the last checkpoint.
#
#   bash scripts/gpu_train.sh [TIME_BUDGET_S] [extra `uvrsep train` options...]
#
# Run from the repository root. It expects, carried with the working tree:
#   .whl/             wheels for what the GPU machine lacks (librosa, soundfile, resampy,
#                     samplerate, typer, tqdm, numba, llvmlite, soxr, audioread, ...; see
#                     docs/training.md for the download command)
#   .train/packed/    a set made by `uvrsep prepare-data` (~50 MB)
#   .train/valset/    validation items (scripts/build_valset.py)
#   .train/resume/    optional: last.pth.partNNN + last.pth.sha256 of a previous run
# It writes to $OUT: the checkpoint in <= 15 MiB parts (join with scripts/split_checkpoint.py),
# train_log.jsonl, train.txt (the console log) and eval.json / eval.csv of the final model.
# On a CPU-only machine, DEVICE=cpu runs the same script end to end (use a tiny model).
set -euo pipefail
BUDGET=${1:-420}
shift || true
OUT=${OUT:-$PWD/.out}
DEVICE=${DEVICE:-cuda}
RUN=${RUN:-/tmp/uvrsep_run}
mkdir -p "$OUT" "$RUN"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
if ls .train/resume/last.pth.part[0-9][0-9][0-9] >/dev/null 2>&1; then
  python3 scripts/split_checkpoint.py join .train/resume/last.pth "$RUN/last.pth"
fi
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU"; } | tee "$OUT/train.txt"
set -o pipefail
python3 -m uvrsep train --data .train/packed --out "$RUN" --device "$DEVICE" --workers "${WORKERS:-12}" \
  --time-budget "$BUDGET" --val-dir .train/valset --checkpoint-every 200 "$@" 2>&1 | tee -a "$OUT/train.txt"
python3 scripts/split_checkpoint.py split "$RUN/last.pth" "$OUT/last.pth" --max-mib 15
cp "$RUN/train_log.jsonl" "$OUT/"
python3 -c "from uvrsep.training import export_model; from pathlib import Path; export_model(Path('$RUN/last.pth'), Path('$RUN/model_fp16.pth'))"
python3 -m uvrsep eval .train/valset -m "$RUN/model_fp16.pth" --device "$DEVICE" -o "$OUT/eval" 2>&1 | tee -a "$OUT/train.txt"
