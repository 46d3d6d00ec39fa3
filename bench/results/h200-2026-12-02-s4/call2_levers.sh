# Call 2 (issue 10): fixed 1,024-token blocks, 7B; the Trainer(bf16=True) baseline, then firefly-train with
# this session's levers one at a time: frozen weights 16-bit (now the default), + fused LoRA inputs,
# + compiled decoder layers, + compiled layers with 4 layers uncheckpointed.
source .carry/activate && python3 -m compileall -q /tmp/carry-site >/dev/null 2>&1
T=.carry/data/tokenizers/chinese-llama2
run() {  # name timeout args...
  local name=$1 t=$2; shift 2
  timeout $t python3 bench/train_throughput.py --model-dir /tmp/m7 --tokenizer $T --kind fixed --steps 20 \
    --json $OUT/$name.json "$@" 2>&1 | grep -v -e kernels-community -e "Loading weights" -e warn | tail -45 > $OUT/$name.log
  grep -E "^(baseline|firefly) " $OUT/$name.log | sed "s/^/$name: /"
}
run baseline 200 --which baseline
run bf16_stream 130 --which firefly --profile 1
run bf16_fused 110 --which firefly -- --lora.fuse_shared_inputs true
run compiled 200 --which firefly --profile 1 -- --compile_layers true
run compiled_keep4 170 --which firefly -- --compile_layers true --uncheckpointed_layers 4
