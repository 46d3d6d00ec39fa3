#!/usr/bin/env bash
# The test command (README, .ci/run): set up, then run the default test suite (slow and GPU tests are
# excluded by pyproject's addopts; run them with `scripts/test.sh -m slow`). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export FIREFLY_CACHE=${FIREFLY_CACHE:-$PWD/.cache/firefly}
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ $rc = 5 ]; then
  echo "test.sh: pytest collected no tests: failing (exit 5 must not pass silently)" >&2
  exit 1
fi
exit $rc
