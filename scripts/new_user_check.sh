#!/usr/bin/env bash
# A new user's first hour, scripted: a fresh clone of this repository (its HEAD), a fresh virtual
# environment, and the README's two commands exactly as printed there (read from README.md, not
# copied here), with the default model's download pointed at a server on 127.0.0.1.
#
#   bash scripts/new_user_check.sh [--no-tests]
#
# Needs: python3 with venv, git, the package index (PyPI; torch from PyTorch's CPU index or a local
# wheel), and a 32-wide HP-family weight file to stand in for HP2_all_vocals.pth: by default the
# parity fixture $UVRSEP_SHARED/fixtures/parity/random_hp_fp16.pth (../shared beside the checkout),
# or WEIGHTS=path. Not run in CI (it installs from the package index). Prints the wall time of each
# command; exits non-zero if a command fails or the outputs are not what the README says.
#
# The stand-in is registered as a user model named HP2_all_vocals (user entries override the
# shipped ones by name), because the shipped entry pins the real file's sha256 and a mirror
# (UVRSEP_MIRROR) serving another file would rightly be refused.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
run_tests=1
[ "${1:-}" = "--no-tests" ] && run_tests=0
shared=${UVRSEP_SHARED:-$repo/../shared}
weights=${WEIGHTS:-$shared/fixtures/parity/random_hp_fp16.pth}
[ -f "$weights" ] || { echo "new_user_check: no stand-in weight file at $weights (set WEIGHTS=...)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/uvrsep-newuser.XXXXXX")
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The README's commands: the first code block of "## Install and run" (install and separate) and
# the block after "Run the tests" (the test command).
read_block() {  # $1: a line that comes before the block
  awk -v marker="$1" '
    index($0, marker) == 1 { seen = 1; next }
    seen && /^```/ { if (inside) exit; inside = 1; next }
    inside { print }
  ' "$repo/README.md"
}
main_cmd=$(read_block "## Install and run")
test_cmd=$(read_block "Run the tests")
[ -n "$main_cmd" ] && [ -n "$test_cmd" ] || { echo "new_user_check: README commands not found" >&2; exit 2; }
echo "README command 1: $main_cmd"
echo "README command 2: $test_cmd"

# A fresh clone, a song, and the model server on 127.0.0.1.
git clone -q "$repo" "$work/uvrsep"
mkdir -p "$work/serve" "$work/home"
cp "$weights" "$work/serve/HP2_all_vocals.pth"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$work/serve" >/dev/null 2>&1 &
server_pid=$!
python3 - "$work/home/user_models.json" "$port" <<'EOF'
import json, sys
entry = {"name": "HP2_all_vocals", "file": "HP2_all_vocals.pth", "source": "user", "family": "aspp",
         "width": 32, "params": "4band_v2", "primary": "Instrumental",
         "urls": [f"http://127.0.0.1:{sys.argv[2]}/HP2_all_vocals.pth"], "note": "new-user check stand-in"}
json.dump([entry], open(sys.argv[1], "w"))
EOF
python3 - "$work/uvrsep/song.wav" <<'EOF'
import math, struct, sys, wave
rate, seconds = 44100, 12
with wave.open(sys.argv[1], "wb") as w:
    w.setnchannels(2); w.setsampwidth(2); w.setframerate(rate)
    frames = bytearray()
    for n in range(rate * seconds):
        t = n / rate
        voice = 0.3 * math.sin(2 * math.pi * (440 * t + 3 * math.sin(2 * math.pi * 5 * t)))
        chord = sum(0.1 * math.sin(2 * math.pi * f * t) for f in (130.8, 164.8, 196.0))
        frames += struct.pack("<hh", int(12000 * (voice + chord)), int(9000 * (voice + chord)))
    w.writeframes(bytes(frames))
EOF
for i in $(seq 50); do python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" 2>/dev/null && break; sleep 0.1; done

python3 -m venv "$work/venv"
# shellcheck disable=SC1091
. "$work/venv/bin/activate"
export UVRSEP_HOME="$work/home"
cd "$work/uvrsep"

timed() {  # $1: label, $2: command
  local start
  start=$(date +%s%N)
  bash -c "$2"
  echo "$1: $(( ($(date +%s%N) - start) / 1000000 )) ms" | tee -a "$work/times"
}

timed "install and separate (command 1)" "$main_cmd"
for stem in vocals instrumental; do
  python3 -c "import soundfile as sf, sys; i = sf.info('song_$stem.wav'); sys.exit(not (i.samplerate == 44100 and i.channels == 2 and i.frames == 44100 * 12))" \
    || { echo "new_user_check: song_$stem.wav is not the README's output" >&2; exit 1; }
done
echo "outputs: song_vocals.wav, song_instrumental.wav (44.1 kHz stereo, full length)"
timed "separate again, model cached" "uvrsep separate song.wav --overwrite"
timed "uvrsep --help" "uvrsep --help >/dev/null"
timed "uvrsep --version" "uvrsep --version"
if [ "$run_tests" = 1 ]; then
  timed "install test extras and run the tests (command 2)" "$test_cmd"
fi
echo "new_user_check: OK"
cat "$work/times"
