# GPU call 2 (tenth session, issue 11): full-set leaderboard shard, ARC-Challenge and TruthfulQA mc2, every
# question, stock lm-eval (batch auto) against ours, bitwise FireflyLM. Added up by bench/leaderboard_shards.py.
set -u
source .carry/activate || exit 1
python3 -m compileall -q /tmp/carry-site
t0=$(date +%s)
python3 -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('configs/shapes/llama2-7b.json'), 55296, Path('/tmp/l7'))"
cp --update=none .carry/data/tokenizers/chinese-llama2/* /tmp/l7/
echo "model ready at $(( $(date +%s) - t0 )) s"
timeout $(( 560 - ($(date +%s) - t0) )) python3 bench/eval_throughput.py leaderboard --model-dir /tmp/l7 \
    --data-dir .carry/data/english --tasks arc_challenge truthfulqa_mc2 --docs 0: --json $OUT/lb_arc_tqa.json > $OUT/lb_arc_tqa.log 2>&1
echo "leaderboard rc=$? at $(( $(date +%s) - t0 )) s"; grep -a -A8 "^unit" $OUT/lb_arc_tqa.log; grep -a "^\[\|Error" $OUT/lb_arc_tqa.log
