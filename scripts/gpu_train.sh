#!/usr/bin/env bash
# Train on a lent GPU machine inside one device command, resuming from carried state if any.
#
#   bash scripts/gpu_train.sh OUTDIR [DEADLINE_S] [extra `uvrsep train` options...]
#
# Run from the repository root. DEADLINE_S (default 520) is the wall time the WHOLE script may
# take: training gets what is left after setup (installing wheels, decoding the pack once into
# /tmp/uvrsep_packed, unpacking the validation set, the optional probe), less RESERVE_S (default
# 120 s: starting the training process, the last checkpoint, export, splitting, final evaluation).
# Give the device call a timeout_s ~20 s above DEADLINE_S (520 -> 540).
#
# Carried with the working tree (device `carry`; total <= 64 MiB, see docs/training.md):
#   .whl/                  wheels the GPU image lacks (librosa, soundfile, soxr, ...; 6.5 MiB),
#                          installed only if `import librosa, soundfile, ...` fails there
#   .train/packed/         the training pack (scripts/build_training_data.sh; ~48 MiB)
#   .train/valset_carry/   the compact validation set (scripts/compact_valset.py; ~4.5 MiB)
#   .train/resume/         optional: last.pth.partNNN + last.pth.sha256 from an earlier OUTDIR
#                          (does not fit beside the pack in one call at width 16; docs/training.md)
# OUTDIR receives at most 8 files, each <= 15.9 MiB, for the device's return limits
# (8 files, 16 MiB each, 64 MiB together):
#   last.pth.partNNN, last.pth.sha256   the resume state (STATE=bf16, the default: fp32 weights,
#                                       optimizer moments rounded to bf16; fp32; drop; none = not
#                                       returned). Join with `scripts/split_checkpoint.py join`.
#   train.txt          console log with timings (no progress bars);  train_log.jsonl   a record per step
#   eval.json          `uvrsep eval` of the final model (fp16 export) on the compact validation set
#   model_fp16.pth     the exported inference file, only where it fits beside the state (STATE=drop
#                      or none at width 16; not beside STATE=bf16: export it from the joined parts)
# Environment: DEVICE (cuda), WORKERS (12 data threads), RUN (/tmp/uvrsep_run: run folder),
# STATE, RESERVE_S. PROBE_S=N first trains the same configuration for N s from scratch to measure
# its steps/s, then gives the real run `--steps` = steps/s x time left x PROBE_FILL (0.85: the
# periodic validation takes time too) and, unless given, `--val-every` = a third of that; do not
# pass --steps with it, and resume such a run with the --steps its train.txt reports.
# On a CPU-only machine DEVICE=cpu runs the same script end to end (tiny model).
set -uo pipefail
[ $# -ge 1 ] || { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
START=$SECONDS
OUTDIR=$1; shift
DEADLINE=520
if [[ ${1:-} =~ ^[0-9]+$ ]]; then DEADLINE=$1; shift; fi
DEVICE=${DEVICE:-cuda}
RUN=${RUN:-/tmp/uvrsep_run}
STATE=${STATE:-bf16}
RESERVE=${RESERVE_S:-120}
mkdir -p "$OUTDIR" "$RUN" || exit 1
LOG=$OUTDIR/train.txt
say() { echo "[gpu_train +$((SECONDS - START))s] $*" | tee -a "$LOG"; }
: > "$LOG"

export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
if ! python3 -c "import librosa, soundfile, soxr, resampy, samplerate" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    2>&1 | tee -a "$LOG" || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
say "python $(python3 -c 'import sys, torch, numpy, librosa; print(sys.version.split()[0], "torch", torch.__version__, "numpy", numpy.__version__, "librosa", librosa.__version__)' 2>&1)"
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU"; } | tee -a "$LOG"

VALSET=/tmp/uvrsep_valset
if ! cmp -s .train/valset_carry/valset.json "$VALSET/valset.json"; then
  rm -rf "$VALSET"
  python3 scripts/compact_valset.py unpack .train/valset_carry "$VALSET" 2>&1 | tee -a "$LOG" || exit 1
fi
if ls .train/resume/last.pth.part[0-9][0-9][0-9] >/dev/null 2>&1; then
  python3 scripts/split_checkpoint.py join .train/resume/last.pth "$RUN/last.pth" 2>&1 | tee -a "$LOG" || exit 1
  say "resuming from .train/resume"
fi

# Decode the Opus pack once into float32 arrays that every process below memory-maps (PackedSet
# reads vocals.npy / music.npy where present): the same samples, without decoding again per process.
PACKED=/tmp/uvrsep_packed
if ! cmp -s .train/packed/index.json "$PACKED/index.json"; then
  rm -rf "$PACKED"
  python3 - .train/packed "$PACKED" <<'PY' 2>&1 | tee -a "$LOG" || exit 1
import shutil, sys
from pathlib import Path
import numpy as np
from uvrsep.training import PackedSet
src, dest = Path(sys.argv[1]), Path(sys.argv[2])
data = PackedSet(src)
tmp = dest.with_name(dest.name + ".tmp")
shutil.rmtree(tmp, ignore_errors=True)
tmp.mkdir(parents=True)
np.save(tmp / "vocals.npy", np.asarray(data.vocals, dtype=np.float32))
np.save(tmp / "music.npy", np.asarray(data.music, dtype=np.float32))
shutil.copyfile(src / "index.json", tmp / "index.json")
tmp.rename(dest)
PY
  say "pack decoded into $PACKED"
fi
TRAIN=(python3 -m uvrsep train --data "$PACKED" --device "$DEVICE" --workers "${WORKERS:-12}")
steps=()
if [ -n "${PROBE_S:-}" ]; then
  # Measure this configuration's steps/s here, then size --steps so that the learning-rate
  # schedule (it spans --steps) ends inside the budget instead of being cut off at a high rate.
  rm -rf /tmp/uvrsep_probe
  "${TRAIN[@]}" --out /tmp/uvrsep_probe --time-budget "$PROBE_S" --steps 1000000 --restart "$@" \
    2>&1 | tr '\r' '\n' | grep -v -e '^ *$' -e '%|' | tail -n 2 >> "$LOG"
  left=$((DEADLINE - (SECONDS - START) - RESERVE))
  probe=$(python3 - /tmp/uvrsep_probe/train_log.jsonl "$left" "${PROBE_FILL:-0.85}" <<'PY'
import json, sys
records = [json.loads(line) for line in open(sys.argv[1])]
b = records[-1]
a = records[5] if len(records) > 10 else {"step": 0, "seconds": 0.0}  # past warm-up where possible
rate = (b["step"] - a["step"]) / (b["seconds"] - a["seconds"])
print(max(1, int(rate * float(sys.argv[2]) * float(sys.argv[3]))), f"{rate:.3f}")
PY
  )
  if [ -n "$probe" ]; then
    say "probe: ${probe#* } steps/s over $PROBE_S s -> --steps ${probe% *} for the $left s left"
    steps=(--steps "${probe% *}")
    # About 3 validation passes per run unless --val-every is given (each costs time on the clock).
    [[ " $* " == *" --val-every "* ]] || steps+=(--val-every "$(( ${probe% *} / 3 > 1 ? ${probe% *} / 3 : 1 ))")
  else
    say "probe failed (no steps logged): training with the given --steps"
  fi
fi
BUDGET=$((DEADLINE - (SECONDS - START) - RESERVE))
[ "$BUDGET" -gt 0 ] || { say "no time left for training (deadline $DEADLINE s, reserve $RESERVE s)"; exit 1; }
say "training for at most $BUDGET s: $* ${steps[*]}"
# The loop stops itself at the budget; `timeout` is the safety net that keeps time to split the
# checkpoint should a step or a validation pass run far over: on SIGTERM the loop stops after
# the current step and saves; a process still running 20 s later is killed, and the checkpoint
# saved every 100 steps is what is left.
timeout -k 20 "$((BUDGET + RESERVE / 2))" "${TRAIN[@]}" --out "$RUN" --time-budget "$BUDGET" \
  --val-dir "$VALSET" --checkpoint-every 100 "$@" "${steps[@]}" 2>&1 | tr '\r' '\n' | grep -v -e '^ *$' -e '%|' >> "$LOG"
status=${PIPESTATUS[0]}
say "training ended (exit $status)"
[ -f "$RUN/train_log.jsonl" ] && cp "$RUN/train_log.jsonl" "$OUTDIR/"
[ -f "$RUN/last.pth" ] || { say "no checkpoint"; exit 1; }

python3 - "$RUN" "$STATE" <<'EOF' 2>&1 | tee -a "$LOG"
import sys
from pathlib import Path
from uvrsep.training import compact_checkpoint, export_model
run, state = Path(sys.argv[1]), sys.argv[2]
export_model(run / "last.pth", run / "model_fp16.pth")
if state != "none":
    compact_checkpoint(run / "last.pth", run / "transport.pth", moments=state)
EOF
if [ "$STATE" != none ]; then
  python3 scripts/split_checkpoint.py split "$RUN/transport.pth" "$OUTDIR/last.pth" --max-mib 15.9 >> "$LOG" || exit 1
fi
# The fp16 model too, where it fits beside the state (7 files, 62 MiB; eval.json is the 8th).
model_bytes=$(stat -c %s "$RUN/model_fp16.pth")
out_bytes=$(du -sb "$OUTDIR" | cut -f1)
if [ "$model_bytes" -le $((159 * 2**20 / 10)) ] && [ $((out_bytes + model_bytes)) -le $((62 * 2**20)) ] \
   && [ "$(ls "$OUTDIR" | wc -l)" -le 5 ]; then
  cp "$RUN/model_fp16.pth" "$OUTDIR/"
fi
say "checkpoint exported and split"
python3 -m uvrsep eval "$VALSET" -m "$RUN/model_fp16.pth" --device "$DEVICE" -o "$RUN/eval" >> "$LOG" 2>&1 &&
  cp "$RUN/eval.json" "$OUTDIR/eval.json"
say "done: $(ls "$OUTDIR" | tr '\n' ' ')"
exit "$status"
