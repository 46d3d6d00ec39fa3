# Call 4 (issue 10): fixed blocks within the baseline's memory. Call 3 measured 11.4 GiB with every compiled layer
# checkpointed and 29.9 GiB with 13 not: 1.42 GiB per uncheckpointed layer, so 6 fit under 21.4 GiB with the
# recipe's paged 32-bit AdamW, and 8 with bitsandbytes' paged 8-bit AdamW (3.7 GB less optimizer state).
source .carry/activate && python3 -m compileall -q /tmp/carry-site >/dev/null 2>&1
T=.carry/data/tokenizers/chinese-llama2
run() {  # name timeout args...
  local name=$1 t=$2; shift 2
  timeout $t python3 bench/train_throughput.py --model-dir /tmp/m7 --tokenizer $T --kind fixed --steps 15 \
    --json $OUT/$name.json "$@" 2>&1 | grep -v -e kernels-community -e "Loading weights" -e warn | tail -30 > $OUT/$name.log
  grep -E "^(baseline|firefly) |^loss curves" $OUT/$name.log | sed "s/^/$name: /"
}
run baseline 120 --which baseline
run keep6 110 --which firefly -- --compile_layers true --uncheckpointed_layers 6
run keep8_adam8bit 110 --which firefly -- --compile_layers true --uncheckpointed_layers 8 --optimizer paged_adamw_8bit
