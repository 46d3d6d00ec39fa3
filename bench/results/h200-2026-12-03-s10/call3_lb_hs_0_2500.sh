# GPU call 3 (tenth session, issue 11): full-set leaderboard shard, HellaSwag docs 0-2499 of
# 10,042, stock lm-eval (batch auto) against ours, bitwise FireflyLM. Added up by bench/leaderboard_shards.py.
set -u
source .carry/activate || exit 1
python3 -m compileall -q /tmp/carry-site
t0=$(date +%s)
python3 -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('configs/shapes/llama2-7b.json'), 55296, Path('/tmp/l7'))"
cp --update=none .carry/data/tokenizers/chinese-llama2/* /tmp/l7/
echo "model ready at $(( $(date +%s) - t0 )) s"
timeout $(( 520 - ($(date +%s) - t0) )) python3 bench/eval_throughput.py leaderboard --model-dir /tmp/l7 \
    --data-dir .carry/data/english --tasks hellaswag --docs 0:2500 --json $OUT/lb_hs0.json > $OUT/lb_hs0.log 2>&1
echo "leaderboard rc=$? at $(( $(date +%s) - t0 )) s"; grep -a -A8 "^unit" $OUT/lb_hs0.log; grep -a "^\[\|Error" $OUT/lb_hs0.log
