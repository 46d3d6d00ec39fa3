# GPU call 1 (2026-12-03, eighth session, issue 11): generation with the fused decoding kernel again (the fifth
# session's revert, never re-measured), then full CMMLU with the prefix cache as broadcast views, against
# OpenCompass's own get_ppl on 3 subjects.
set -u
source .carry/activate || exit 1
python3 -m compileall -q /tmp/carry-site
t0=$(date +%s)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > $OUT/gpu.txt
python3 -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('configs/shapes/llama2-7b.json'), 55296, Path('/tmp/l7'))"
cp -n .carry/data/tokenizers/chinese-llama2/* /tmp/l7/
echo "model ready at $(( $(date +%s) - t0 )) s"
timeout 230 python3 bench/eval_throughput.py generate --model-dir /tmp/l7 --reference-items 0 --no-plain \
    --json $OUT/generate.json > $OUT/generate.log 2>&1
echo "generate rc=$? at $(( $(date +%s) - t0 )) s"; grep -v -i "warn" $OUT/generate.log | tail -12
timeout 280 python3 bench/eval_throughput.py cmmlu --model-dir /tmp/l7 --data-dir .carry/data/cmmlu --full \
    --reference-subjects agronomy anatomy ancient_chinese --reference-batch-sizes 32 --out /tmp/cmmlu \
    --json $OUT/cmmlu.json > $OUT/cmmlu_stage.log 2>&1
echo "cmmlu stage rc=$? at $(( $(date +%s) - t0 )) s"; grep -v -i "warn" $OUT/cmmlu_stage.log | tail -20
cp /tmp/cmmlu/*full*.log $OUT/ 2>/dev/null; ls /tmp/cmmlu
