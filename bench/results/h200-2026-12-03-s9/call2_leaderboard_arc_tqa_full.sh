# GPU call 2 (ninth session, issue 11): the first full-task shard of the leaderboard, stock lm-eval
# (simple_evaluate, batch size auto: what users run) against FireflyLM on every ARC-Challenge and TruthfulQA mc2
# question, bf16. Shards add up with bench/leaderboard_shards.py.
set -u
source .carry/activate || exit 1
python3 -m compileall -q /tmp/carry-site
t0=$(date +%s)
python3 -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('configs/shapes/llama2-7b.json'), 55296, Path('/tmp/l7'))"
cp --update=none .carry/data/tokenizers/chinese-llama2/* /tmp/l7/
echo "model ready at $(( $(date +%s) - t0 )) s"
timeout $(( 585 - ($(date +%s) - t0) )) python3 bench/eval_throughput.py leaderboard --model-dir /tmp/l7 \
    --data-dir .carry/data/english --tasks arc_challenge truthfulqa_mc2 --docs 0: --json $OUT/lb_arc_tqa.json > $OUT/lb_arc_tqa.log 2>&1
echo "leaderboard rc=$? at $(( $(date +%s) - t0 )) s"; grep -a -A12 "^unit" $OUT/lb_arc_tqa.log; grep -a "^\[" $OUT/lb_arc_tqa.log
