# GPU call 2 (2026-12-02, third session): generation (130 x 512, stable top-p sort), then the leaderboard stock vs ours.
set -u
source .carry/activate || exit 1
t0=$(date +%s)
python3 -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('configs/shapes/llama2-7b.json'), 55296, Path('/tmp/l7'))"
cp .carry/data/tokenizers/chinese-llama2/* /tmp/l7/
echo "model built in $(( $(date +%s) - t0 )) s"
timeout 230 python3 bench/eval_throughput.py generate --model-dir /tmp/l7 --reference-items 0 \
    --json $OUT/generate.json > $OUT/generate.log 2>&1
echo "generate rc=$?"; grep -v "Warning\|warn" $OUT/generate.log | tail -14
timeout 340 python3 bench/eval_throughput.py leaderboard --model-dir /tmp/l7 --data-dir .carry/data/english \
    --limit 50 --batch-size 64 --json $OUT/leaderboard.json > $OUT/leaderboard.log 2>&1
echo "leaderboard rc=$?"; grep -v "Warning\|warn" $OUT/leaderboard.log | tail -12
echo "total $(( $(date +%s) - t0 )) s"
