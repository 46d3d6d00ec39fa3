#!/usr/bin/env bash
# One call on the lent GPU for the benchmarks (bench/NOTES.md "For the next GPU session"): the carry's
# packages (../shared/gpu/README.md), the seeded random-init model every session measures (/tmp/l7: the Llama-2-7B
# shape, vocabulary 55,296, the Chinese-LLaMA-2 tokenizer), then each argument as a command, in order, each given
# what is left of BUDGET seconds. Everything goes to $OUT/call.log; a line per command says its exit status and
# when it ended, followed by the command's last lines without warnings.
#
#   BUDGET=560 bash bench/gpu_call.sh \
#     'python3 bench/eval_throughput.py leaderboard --model-dir /tmp/l7 --data-dir .carry/data/english --tasks hellaswag --docs 5000:6000 --json $OUT/lb_hs_5000.json' \
#     '...'
#
# BUDGET counts from after the carry is unpacked; keep it 20-40 s under the call's limit. SHAPE (default the 7B's),
# VOCAB and MODEL (default /tmp/l7) choose another model (the 13B for the training benchmarks: SHAPE=configs/
# shapes/llama2-13b.json MODEL=/tmp/m13); CARRY (default .carry/activate) is for the CPU test.
set -u
BUDGET=${BUDGET:-560}
MODEL=${MODEL:-/tmp/l7}
source "${CARRY:-.carry/activate}" || exit 1
[ -d /tmp/carry-site ] && python3 -m compileall -q /tmp/carry-site  # the kit has no .pyc files
t0=$(date +%s)
LOG=$OUT/call.log
python3 -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('${SHAPE:-configs/shapes/llama2-7b.json}'), ${VOCAB:-55296}, Path('$MODEL'))" >> "$LOG" 2>&1 || exit 1
[ -d .carry/data/tokenizers/chinese-llama2 ] && cp --update=none .carry/data/tokenizers/chinese-llama2/* "$MODEL"/
echo "=== model ready at $(( $(date +%s) - t0 )) s" | tee -a "$LOG"
for cmd in "$@"; do
  echo "=== $cmd" >> "$LOG"
  start=$(wc -l < "$LOG")
  left=$(( BUDGET - ($(date +%s) - t0) ))
  timeout $(( left > 0 ? left : 1 )) bash -c "$cmd" >> "$LOG" 2>&1
  echo "=== rc=$? at $(( $(date +%s) - t0 )) s: ${cmd:0:160}" | tee -a "$LOG"
  tail -n +$(( start + 1 )) "$LOG" | grep -a -v -i "warn\|it/s\]\|^  f'\|^=== rc" | tail -14
done
