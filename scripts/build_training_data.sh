#!/usr/bin/env bash
# Fetch every training source and pack the training set and the validation set.
#
#   bash scripts/build_training_data.sh OUTDIR        (run from anywhere; uvrsep must be importable)
#
# Writes (nothing of it belongs in git; .train/ is ignored):
#   OUTDIR/src/music/<package>/     16 Debian game-soundtrack packages (../shared/tools/debian_music.sh)
#   OUTDIR/src/fotaq/               Flight of the Amazon Queen dialog, one MP3 per line (fotaq_speech.py;
#                                   its held-out characters are skipped by the tool)
#   OUTDIR/src/debian_speech/       gcin-voice + klettres-data syllables/letters (debian_speech.sh)
#   OUTDIR/speech/fotaq/            those lines joined into ~20 s chunks per character (join_speech.py)
#   OUTDIR/speech/syllables/        the syllables joined into ~20 s chunks per voice/language
#   OUTDIR/packed/                  `uvrsep prepare-data` output: vocals.opus, music.opus, index.json
#   OUTDIR/valset/                  scripts/build_valset.py: 18 items from held-out material only
#   OUTDIR/valset_carry/            the same items, compact for the GPU machine (scripts/compact_valset.py)
#
# Needs: apt-get with Debian bookworm (or newer) main in its sources (`apt-get download`, no root),
# dpkg-deb, python3 with uvrsep installed (the project's venv), ../shared/{tools,data} beside the
# repository (or SHARED=DIR). Disk: ~1.5 GB in OUTDIR plus ~0.7 GB of temporary space for the
# largest .deb. Network: ~2.95 GB of Debian downloads.
# Took here (2 cores shared with other work, load 8-14, 2026-11-30): music download 12 min,
# debian_speech 4.7 min (run beside the music download), fotaq 0.5 min, joining 1.3 min, packing
# 18.2 min wall (~3.5 min of CPU), validation set and its compact copy 1.3 min: ~40 min in all.
# Result: packed/ 49.9 MB (54.6 min of vocals, 27.3 min of music), valset_carry/ 4.3 MB.
#
# Every step is deterministic (fixed seed 0, sorted file orders) and skips work already complete
# (the fetch tools skip finished packages; a step whose output exists is not redone: delete it to
# redo it). Hold-out rule: --hold-out 0.2 with --seed 0 in both prepare-data and build_valset.py,
# so the validation music (held-out asc-music and drascula-music tracks) is never packed for training.
set -euo pipefail
[ $# -eq 1 ] || { sed -n '2,3p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
REPO=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$REPO/../shared}
SHARED=$(cd "$SHARED" && pwd)
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
cd "$REPO"
SEED=0
HOLD_OUT=0.2
stamp() { echo "[$(date +%T)] $*" >&2; }

stamp "music"
bash "$SHARED/tools/debian_music.sh" "$OUT/src/music"
stamp "speech"
bash "$SHARED/tools/debian_speech.sh" "$OUT/src/debian_speech"
python3 "$SHARED/tools/fotaq_speech.py" "$OUT/src/fotaq"

if [ ! -f "$OUT/speech/fotaq/manifest.csv" ]; then
  stamp "joining the FOTAQ lines"
  python3 scripts/join_speech.py "$OUT/src/fotaq" "$OUT/speech/fotaq" --group character --gap-s 0.3
fi
if [ ! -f "$OUT/speech/syllables/manifest.csv" ]; then
  stamp "joining the syllables"
  python3 scripts/join_speech.py "$OUT/src/debian_speech" "$OUT/speech/syllables" --group voice --gap-s 0.15
fi

if [ ! -f "$OUT/packed/index.json" ]; then
  stamp "packing"
  music=()
  for d in $(find "$OUT/src/music" -mindepth 1 -maxdepth 1 -type d | LC_ALL=C sort); do music+=(--music "$d"); done
  python3 -m uvrsep prepare-data "$OUT/packed" --shared-data "$SHARED/data" "${music[@]}" \
    --speech "$OUT/speech/fotaq:5500" --speech "$OUT/speech/syllables" \
    --max-mb 50 --codec opus --seed "$SEED" --hold-out "$HOLD_OUT"
fi

if [ ! -f "$OUT/valset/valset.json" ]; then
  stamp "validation set"
  python3 scripts/build_valset.py "$OUT/valset" --shared-data "$SHARED/data" --seed "$SEED" --hold-out "$HOLD_OUT" \
    --music "$OUT/src/music/asc-music" --music "$OUT/src/music/drascula-music"
fi
if [ ! -f "$OUT/valset_carry/valset.json" ]; then
  python3 scripts/compact_valset.py pack "$OUT/valset" "$OUT/valset_carry"
fi
du -sh "$OUT/packed" "$OUT/valset" "$OUT/valset_carry" >&2
stamp "done"
