# GPU call 4 (2026-12-02, third session): which numerics setting makes eager greedy decoding independent of the row.
set -u
source .carry/activate || exit 1
t0=$(date +%s)
python3 -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('configs/shapes/llama2-7b.json'), 55296, Path('/tmp/l7'))"
cp .carry/data/tokenizers/chinese-llama2/* /tmp/l7/
echo "model built in $(( $(date +%s) - t0 )) s"
timeout 150 python3 bench/generate_row_order.py --model-dir /tmp/l7 --settings default no-reduced-bf16 sdpa-math \
    no-reduced-bf16+sdpa-math --json $OUT/row_order_settings.json > $OUT/row_order_settings.log 2>&1
echo "rc=$?"; grep -v "Warning\|warn" $OUT/row_order_settings.log | tail -10
echo "total $(( $(date +%s) - t0 )) s"
