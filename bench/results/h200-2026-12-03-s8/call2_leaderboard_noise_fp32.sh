# GPU call 2 (eighth session, issue 11): leaderboard per task, stock against ours and stock against itself at
# batch 16 (bf16, --limit 10); then float32, --limit 2: whether per-request log-likelihoods agree within 1e-4.
set -u
source .carry/activate || exit 1
t0=$(date +%s)
python3 -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('configs/shapes/llama2-7b.json'), 55296, Path('/tmp/l7'))"
cp --update=none .carry/data/tokenizers/chinese-llama2/* /tmp/l7/
echo "model ready at $(( $(date +%s) - t0 )) s"
timeout 330 python3 bench/eval_throughput.py leaderboard --model-dir /tmp/l7 --data-dir .carry/data/english \
    --limit 10 --noise-batch-size 16 --json $OUT/lb_noise.json > $OUT/lb_noise.log 2>&1
echo "leaderboard noise rc=$? at $(( $(date +%s) - t0 )) s"; grep -a -A12 "^unit" $OUT/lb_noise.log; grep -a "^\[" $OUT/lb_noise.log
timeout $(( 585 - ($(date +%s) - t0) )) python3 bench/eval_throughput.py leaderboard --model-dir /tmp/l7 \
    --data-dir .carry/data/english --limit 2 --dtype float32 --json $OUT/lb_fp32.json > $OUT/lb_fp32.log 2>&1
echo "leaderboard fp32 rc=$? at $(( $(date +%s) - t0 )) s"; grep -a -A12 "^unit" $OUT/lb_fp32.log; grep -a "^\[" $OUT/lb_fp32.log
