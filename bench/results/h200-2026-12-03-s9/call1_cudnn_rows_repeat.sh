# GPU call 1 (ninth session, issue 11). Call 3 of the eighth session: stock HFLM = cuDNN attention bit for bit;
# continuations over the cached context through flash attention are not. Now: rows over cached keys/values laid
# out as stock's rows (firefly_eval/cached_rows.py), under SDPA's default pick and cuDNN forced. Then why a
# sampled generation run does not repeat itself on the GPU (0/130 in call 3, 130/130 on a CPU): eager decoding
# vs the compiled step, with the first step that differs. FireflyLM now runs on cached_rows (CPU: within 1e-4
# of HFLM in float32); the leaderboard at --limit 10, both paths at a fixed batch of 16 (no auto probe).
set -u
source .carry/activate || exit 1
python3 -m compileall -q /tmp/carry-site
t0=$(date +%s)
python3 -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('configs/shapes/llama2-7b.json'), 55296, Path('/tmp/l7'))"
cp --update=none .carry/data/tokenizers/chinese-llama2/* /tmp/l7/
echo "model ready at $(( $(date +%s) - t0 )) s"
timeout 200 python3 bench/lm_eval_exactness.py --model-dir /tmp/l7 --json $OUT/exactness.json > $OUT/exactness.log 2>&1
echo "exactness rc=$? at $(( $(date +%s) - t0 )) s"; grep -a -B2 -A14 "^variant" $OUT/exactness.log; grep -a ": " $OUT/exactness.log | grep -a "only\|cache\|rows" | grep -v "^variant" | head
timeout 240 python3 bench/eval_throughput.py leaderboard --model-dir /tmp/l7 --data-dir .carry/data/english \
    --limit 10 --batch-size 16 --json $OUT/lb.json > $OUT/lb.log 2>&1
echo "leaderboard rc=$? at $(( $(date +%s) - t0 )) s"; grep -a -A12 "^unit" $OUT/lb.log; grep -a "^\[" $OUT/lb.log
for mode in --no-compile ""; do
  timeout 100 python3 bench/eval_throughput.py generate --model-dir /tmp/l7 --reference-items 0 --no-plain \
      --max-new-tokens 128 $mode --json $OUT/generate$mode.json > $OUT/generate$mode.log 2>&1
  echo "generate $mode rc=$? at $(( $(date +%s) - t0 )) s"; grep -a -v -i "warn" $OUT/generate$mode.log | tail -4
done
