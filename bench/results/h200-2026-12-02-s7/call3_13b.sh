# Call 3 (issue 10), 13B fixed blocks (random-init Llama-2-13B shape, vocabulary 55,296, micro-batch 8 x 1,024, the
# 13B recipe: fused AdamW, fused LoRA inputs, compiled layers, now with last_product), budget 29.6 GiB:
#  baseline30: Trainer(bf16=True, paged_adamw_32bit), 30 steps;
#  keep4: 4 layers kept (planner 30.9 GiB; it overestimated the 7B by 2.4 GiB), 30 steps;
#  keep2: 2 layers kept, 12 steps (the fallback, and the memory of a kept 13B layer).
source .carry/activate && python3 -m compileall -q /tmp/carry-site >/dev/null 2>&1
T=.carry/data/tokenizers/chinese-llama2
S=$(date +%s)
timeout 150 python3 -c "import sys; sys.path.insert(0,'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('configs/shapes/llama2-13b.json'), 55296, Path('/tmp/m13'))" 2>&1 | tail -1
echo "model built: $(( $(date +%s) - S )) s"
run() {  # name timeout args...
  local name=$1 t=$2; shift 2; local s=$(date +%s)
  echo "=== $name" >> $OUT/all.log
  timeout $t python3 bench/train_throughput.py --shape configs/shapes/llama2-13b.json --recipe configs/llama2-13b-pretrain-qlora.yaml \
    --model-dir /tmp/m13 --tokenizer $T --json $OUT/$name.json "$@" 2>&1 \
    | grep -v -e kernels-community -e "Loading weights" -e FutureWarning -e "warnings.warn" | tail -60 >> $OUT/all.log
  echo "$name: $(( $(date +%s) - s )) s"; tail -60 $OUT/all.log | grep -E "^(baseline|firefly) " | head -4
}
run baseline30 170 --kind fixed --steps 30 --which baseline
run keep4 160 --kind fixed --steps 30 --which firefly -- --uncheckpointed_layers 4
run keep2 120 --kind fixed --steps 12 --which firefly -- --uncheckpointed_layers 2
echo "total: $(( $(date +%s) - S )) s"
