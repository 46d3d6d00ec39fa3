# GPU call 3 (2026-12-02, third session): generation row-order diagnostic, leaderboard stock vs ours (--limit 25,
# batch size auto as users run it), then a cProfile of firefly-eval cmmlu on 20 subjects (where the loop's time goes).
set -u
source .carry/activate || exit 1
t0=$(date +%s)
python3 -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('configs/shapes/llama2-7b.json'), 55296, Path('/tmp/l7'))"
cp .carry/data/tokenizers/chinese-llama2/* /tmp/l7/
echo "model built in $(( $(date +%s) - t0 )) s"
timeout 120 python3 bench/generate_row_order.py --model-dir /tmp/l7 --json $OUT/row_order.json > $OUT/row_order.log 2>&1
echo "row order rc=$?"; grep -v "Warning\|warn" $OUT/row_order.log | tail -8
timeout 300 python3 bench/eval_throughput.py leaderboard --model-dir /tmp/l7 --data-dir .carry/data/english \
    --limit 25 --json $OUT/leaderboard.json > $OUT/leaderboard.log 2>&1
echo "leaderboard rc=$?"; grep -v "Warning\|warn" $OUT/leaderboard.log | tail -12
left=$(( 560 - $(date +%s) + t0 ))
subjects=$(ls .carry/data/cmmlu/test | head -20 | sed 's/.csv//' | tr '\n' ' ')
timeout $left python3 -m cProfile -o $OUT/cmmlu20.prof -m firefly_eval.cli cmmlu --ckpt /tmp/l7 \
    --data-dir .carry/data/cmmlu --subjects $subjects -o /tmp/cmmlu20/out.json > $OUT/cmmlu20.log 2>&1
echo "cmmlu profile rc=$? (limit $left s)"; tail -2 $OUT/cmmlu20.log
echo "total $(( $(date +%s) - t0 )) s"
