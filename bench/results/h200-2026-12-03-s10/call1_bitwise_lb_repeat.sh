# GPU call 1 (tenth session, issue 11). The bitwise FireflyLM (cached_rows, 2,048-row floor per pass) measured:
# bench/lm_eval_exactness.py (incl. "per question, GPU row floor"), then the leaderboard through simple_evaluate
# at --limit 10 (expect max |d ll| 0 and identical metrics), then which kernel makes a sampled run not repeat
# itself (generate_row_order --repeat under each numerics setting).
set -u
BUDGET=${BUDGET:-560}
source .carry/activate || exit 1
python3 -m compileall -q /tmp/carry-site
t0=$(date +%s)
python3 -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('configs/shapes/llama2-7b.json'), 55296, Path('/tmp/l7'))"
cp --update=none .carry/data/tokenizers/chinese-llama2/* /tmp/l7/
echo "model ready at $(( $(date +%s) - t0 )) s"
timeout 150 python3 bench/lm_eval_exactness.py --model-dir /tmp/l7 --json $OUT/exactness.json > $OUT/exactness.log 2>&1
echo "exactness rc=$? at $(( $(date +%s) - t0 )) s"; grep -a -B2 -A16 "^variant" $OUT/exactness.log; grep -a "Error" $OUT/exactness.log | head
timeout 250 python3 bench/eval_throughput.py leaderboard --model-dir /tmp/l7 --data-dir .carry/data/english --limit 10 \
    --json $OUT/lb10.json > $OUT/lb10.log 2>&1
echo "leaderboard rc=$? at $(( $(date +%s) - t0 )) s"; grep -a -A8 "^unit\|^task" $OUT/lb10.log; grep -a "Error" $OUT/lb10.log | head
timeout $(( BUDGET - ($(date +%s) - t0) )) python3 bench/generate_row_order.py --model-dir /tmp/l7 --repeat \
    --settings default no-reduced-bf16 sdpa-math no-reduced-bf16+sdpa-math --json $OUT/repeat_settings.json > $OUT/repeat_settings.log 2>&1
echo "repeat settings rc=$? at $(( $(date +%s) - t0 )) s"; grep -a -v -i "warn" $OUT/repeat_settings.log | tail -12
