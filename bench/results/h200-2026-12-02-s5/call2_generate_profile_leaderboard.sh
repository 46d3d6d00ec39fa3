# GPU call 2 (2026-12-02, fifth session): SDPA backends' first-call cost per shape at CMMLU's chunk shapes; generation with the decoding step's attention on the math backend
# (compiled); CMMLU's 3-subject profile with each top op's shapes and callers; the leaderboard's stock path
# against itself at another batch size (bf16 noise floor), then stock against ours in float32.
set -u
source .carry/activate || exit 1
python3 -m compileall -q /tmp/carry-site
t0=$(date +%s)
timeout 60 python3 bench/sdpa_backends.py --json $OUT/sdpa.json > $OUT/sdpa.log 2>&1; echo "sdpa rc=$?"; grep -v -i warn $OUT/sdpa.log
python3 -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('configs/shapes/llama2-7b.json'), 55296, Path('/tmp/l7'))"
cp .carry/data/tokenizers/chinese-llama2/* /tmp/l7/
echo "model built at $(( $(date +%s) - t0 )) s"
timeout 170 python3 bench/eval_throughput.py generate --model-dir /tmp/l7 --reference-items 0 \
    --json $OUT/generate.json > $OUT/generate.log 2>&1
echo "generate rc=$? at $(( $(date +%s) - t0 )) s"; grep -v -i "warn" $OUT/generate.log | tail -14
timeout 60 python3 bench/eval_profile.py --json $OUT/c3_profile.json -- cmmlu --ckpt /tmp/l7 \
  --data-dir .carry/data/cmmlu --subjects agronomy anatomy ancient_chinese -o /tmp/c3_prof.json > $OUT/c3_profile.log 2>&1
echo "profile rc=$? at $(( $(date +%s) - t0 )) s"; grep -A45 "^firefly-eval cmmlu:" $OUT/c3_profile.log | cut -c1-230
timeout 150 python3 bench/eval_throughput.py leaderboard --model-dir /tmp/l7 --data-dir .carry/data/english \
    --limit 10 --noise-batch-size 16 --json $OUT/leaderboard_noise.json > $OUT/leaderboard_noise.log 2>&1
echo "leaderboard noise rc=$? at $(( $(date +%s) - t0 )) s"; grep -v -i "warn" $OUT/leaderboard_noise.log | tail -16
timeout 150 python3 bench/eval_throughput.py leaderboard --model-dir /tmp/l7 --data-dir .carry/data/english \
    --limit 2 --dtype float32 --json $OUT/leaderboard_fp32.json > $OUT/leaderboard_fp32.log 2>&1
echo "leaderboard fp32 rc=$? at $(( $(date +%s) - t0 )) s"; grep -v -i "warn" $OUT/leaderboard_fp32.log | tail -12
