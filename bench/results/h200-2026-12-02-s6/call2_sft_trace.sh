# Call 2 (issue 10):
#  sft_baseline / sft_firefly: the SFT length mix; baseline pads micro-batches of 8 conversations, firefly-train packs
#    rows of 1,024 (pack_rows) with varlen attention, now computed once per forward outside the compiled layers (the
#    fourth session's 4,401 tokens/s ran with graph breaks and a recompile per step), call 1's keep3 settings;
#  keep5_trace: fixed blocks, 5 layers kept (call 1: 18.8 GiB with 3), one profiled step exported as a Chrome trace:
#    call 1's profile had the GPU idle 96 ms a step, 72 of them inside layer backwards (CPU-bound or synchronising);
#  mb16: fixed blocks, micro-batch 16 (the recipe's 8 x 2 accumulation as one), every layer recomputed: twice the GPU
#    work per launch.
source .carry/activate && python3 -m compileall -q /tmp/carry-site >/dev/null 2>&1
T=.carry/data/tokenizers/chinese-llama2
S=$(date +%s)
timeout 100 python3 -c "import sys; sys.path.insert(0,'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('configs/shapes/llama2-7b.json'), 55296, Path('/tmp/m7'))" 2>&1 | tail -1
echo "model built: $(( $(date +%s) - S )) s"
run() {  # name timeout args...
  local name=$1 t=$2; shift 2; local s=$(date +%s)
  timeout $t python3 bench/train_throughput.py --model-dir /tmp/m7 --tokenizer $T --json $OUT/$name.json "$@" 2>&1 \
    | grep -v -e kernels-community -e "Loading weights" -e FutureWarning -e "warnings.warn" | tail -60 > $OUT/$name.log
  echo "$name: $(( $(date +%s) - s )) s"; grep -E "^(baseline|firefly) " $OUT/$name.log
}
F="--compile_layers true --optimizer adamw_torch --lora.fuse_shared_inputs true"
run sft_baseline 140 --kind sft --steps 15 --which baseline
run sft_firefly 130 --kind sft --steps 15 --which firefly -- $F --uncheckpointed_layers 3 --attn_implementation varlen
run keep5_trace 130 --kind fixed --steps 15 --profile 1 --trace /tmp/keep5.trace.json --which firefly -- $F --uncheckpointed_layers 5
gzip -c /tmp/keep5.trace.json > $OUT/keep5.trace.json.gz 2>/dev/null; ls -la $OUT/keep5.trace.json.gz
run mb16 120 --kind fixed --steps 10 --which firefly -- $F --uncheckpointed_layers 0 --micro_batch_size 16
echo "total: $(( $(date +%s) - S )) s"
