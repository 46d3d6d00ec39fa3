# GPU call 1 (2026-12-02, third session): CMMLU prefix agreement diagnostic, then the CMMLU stage (full set + reference subset).
set -u
source .carry/activate || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $OUT/gpu.txt
python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__)" | tee -a $OUT/gpu.txt
t0=$(date +%s)
python3 -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('configs/shapes/llama2-7b.json'), 55296, Path('/tmp/l7'))"
cp .carry/data/tokenizers/chinese-llama2/* /tmp/l7/
echo "model built in $(( $(date +%s) - t0 )) s"
timeout 170 python3 bench/cmmlu_prefix_agreement.py --model-dir /tmp/l7 --data-dir .carry/data/cmmlu \
    --json $OUT/prefix_agreement.json > $OUT/prefix_agreement.log 2>&1
echo "prefix agreement rc=$?"; grep -v "Warning\|warn" $OUT/prefix_agreement.log | tail -25
timeout 360 python3 bench/eval_throughput.py cmmlu --model-dir /tmp/l7 --data-dir .carry/data/cmmlu --full \
    --reference-subjects agronomy anatomy ancient_chinese --reference-batch-sizes 32 --out /tmp/cmmlu \
    --json $OUT/cmmlu.json > $OUT/cmmlu_stage.log 2>&1
echo "cmmlu stage rc=$?"; tail -30 $OUT/cmmlu_stage.log
mkdir -p $OUT/cmmlu_logs && cp /tmp/cmmlu/*.log /tmp/cmmlu/*.json $OUT/cmmlu_logs/ 2>/dev/null
echo "total $(( $(date +%s) - t0 )) s"
