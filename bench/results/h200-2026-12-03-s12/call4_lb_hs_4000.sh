# GPU call 4 (twelfth session, issue 11): full-set leaderboard shards, HellaSwag docs 4000-4999 of
# 10,042, stock lm-eval (batch auto) against ours (FireflyLM as at 8024de6). Added up by bench/leaderboard_shards.py.
set -u
BUDGET=${BUDGET:-580}
source .carry/activate || exit 1
python3 -m compileall -q /tmp/carry-site
t0=$(date +%s)
python3 -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('configs/shapes/llama2-7b.json'), 55296, Path('/tmp/l7'))"
cp --update=none .carry/data/tokenizers/chinese-llama2/* /tmp/l7/
echo "model ready at $(( $(date +%s) - t0 )) s"
for d in 4000:5000; do
  n=hs_${d%%:*}
  timeout $(( BUDGET - ($(date +%s) - t0) )) python3 bench/eval_throughput.py leaderboard --model-dir /tmp/l7 \
      --data-dir .carry/data/english --tasks hellaswag --docs $d --json $OUT/lb_$n.json > $OUT/lb_$n.log 2>&1
  echo "leaderboard $d rc=$? at $(( $(date +%s) - t0 )) s"; grep -a -A4 "^unit" $OUT/lb_$n.log; grep -a "^\[\|Error" $OUT/lb_$n.log | head
done
