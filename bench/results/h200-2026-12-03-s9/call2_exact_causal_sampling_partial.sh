# GPU call 2 (ninth session, issue 11). Call 1: stock = cuDNN's causal kernel; stock rows with the output layer on
# the scored positions only are bitwise stock; rows over cached keys/values under an additive mask are not
# (28/32), also with cuDNN forced. Now cached_rows makes stock's own attention call (keys laid out as in stock's
# row, the row's queries at their positions of a zero query tensor, is_causal), FireflyLM on it; and stock's rows
# with the causal rule as an additive mask under cuDNN (is it the masked kernel?).
# Sampling: call 1 found an eager sampled run not repeating itself (4/130); the top-p cut now sums in fixed
# point (a float cumsum on CUDA is not deterministic). Then a GPU-bound leaderboard shard: HellaSwag docs 0-599
# and all of TruthfulQA mc2, stock (batch auto) against ours.
set -u
BUDGET=${BUDGET:-400}  # seconds this call may run (device time left minus a start)
source .carry/activate || exit 1
python3 -m compileall -q /tmp/carry-site
t0=$(date +%s)
python3 -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('configs/shapes/llama2-7b.json'), 55296, Path('/tmp/l7'))"
cp --update=none .carry/data/tokenizers/chinese-llama2/* /tmp/l7/
echo "model ready at $(( $(date +%s) - t0 )) s"
timeout 150 python3 bench/lm_eval_exactness.py --model-dir /tmp/l7 --json $OUT/exactness.json > $OUT/exactness.log 2>&1
echo "exactness rc=$? at $(( $(date +%s) - t0 )) s"; grep -a -B2 -A16 "^variant" $OUT/exactness.log; grep -a "only: \|Error" $OUT/exactness.log | head
for mode in "" --no-compile; do
  timeout 100 python3 bench/eval_throughput.py generate --model-dir /tmp/l7 --reference-items 0 --no-plain \
      --max-new-tokens 128 $mode --json $OUT/generate$mode.json > $OUT/generate$mode.log 2>&1
  echo "generate $mode rc=$? at $(( $(date +%s) - t0 )) s"; grep -a -v -i "warn" $OUT/generate$mode.log | tail -2
done
timeout $(( ${BUDGET:-400} - ($(date +%s) - t0) )) python3 bench/eval_throughput.py leaderboard --model-dir /tmp/l7 \
    --data-dir .carry/data/english --tasks hellaswag truthfulqa_mc2 --docs 0:600 --json $OUT/lb_hs_tqa.json > $OUT/lb_hs_tqa.log 2>&1
echo "leaderboard rc=$? at $(( $(date +%s) - t0 )) s"; grep -a -A6 "^unit" $OUT/lb_hs_tqa.log; grep -a "^\[" $OUT/lb_hs_tqa.log
