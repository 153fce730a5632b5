#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with hierspeech2 installed (editable, with the
# test extras) and the system dependency espeak-ng (the phonemizer backend of the text front end);
# as root it also installs Chromium and its WebDriver, with which the web demo's test drives a browser
# (that test skips without them).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if ! command -v espeak-ng >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq espeak-ng >/dev/null
    else
        echo "espeak-ng is missing: install it with 'sudo apt-get install -y espeak-ng' (or your OS's package)" >&2
        exit 1
    fi
fi

if [ "$(id -u)" = 0 ] && ! command -v chromedriver >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null || \
        echo "could not install chromium: the web demo's browser test will be skipped" >&2
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.hierspeech2-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[dev]"
    touch "$stamp"
fi
