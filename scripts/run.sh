#!/usr/bin/env bash
# Set up if needed, then super-resolve the shipped example utterance to 48 kHz with SpeechSR.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
.venv/bin/hierspeech2 sr examples/hello_16k.wav -o out/hello_48k.wav --rate 48000
echo "To use the hierspeech2 and lightning commands in this shell: source .venv/bin/activate"
