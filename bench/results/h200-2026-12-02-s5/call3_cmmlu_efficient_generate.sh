# GPU call 3 (2026-12-02, fifth session): CMMLU with scoring on SDPA's memory-efficient kernel in both engines
# (full set, then the reference subset against OpenCompass's own get_ppl); generation on the math-backend
# decoding step, compiled (no plain-generate reference: call 2 ran out of time on it).
set -u
source .carry/activate || exit 1
python3 -m compileall -q /tmp/carry-site
t0=$(date +%s)
python3 -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('configs/shapes/llama2-7b.json'), 55296, Path('/tmp/l7'))"
cp .carry/data/tokenizers/chinese-llama2/* /tmp/l7/
echo "model built at $(( $(date +%s) - t0 )) s"
timeout 210 python3 bench/eval_throughput.py cmmlu --model-dir /tmp/l7 --data-dir .carry/data/cmmlu --full \
    --reference-subjects agronomy anatomy ancient_chinese --reference-batch-sizes 32 --out /tmp/cmmlu \
    --json $OUT/cmmlu.json > $OUT/cmmlu_stage.log 2>&1
echo "cmmlu stage rc=$? at $(( $(date +%s) - t0 )) s"; grep -v -i "warn" $OUT/cmmlu_stage.log | tail -20
mkdir -p $OUT/cmmlu_logs && cp /tmp/cmmlu/*.log /tmp/cmmlu/*.json $OUT/cmmlu_logs/ 2>/dev/null
timeout 140 python3 bench/eval_throughput.py generate --model-dir /tmp/l7 --reference-items 0 --no-plain \
    --json $OUT/generate.json > $OUT/generate.log 2>&1
echo "generate rc=$? at $(( $(date +%s) - t0 )) s"; grep -v -i "warn" $OUT/generate.log | tail -12
