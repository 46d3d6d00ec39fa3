# Call 5 (issue 10): call 4's keep6 with torch's fused AdamW instead of bitsandbytes' paged one (per-parameter launches).
source .carry/activate && python3 -m compileall -q /tmp/carry-site >/dev/null 2>&1
T=.carry/data/tokenizers/chinese-llama2
run() {  # name timeout args...
  local name=$1 t=$2; shift 2
  timeout $t python3 bench/train_throughput.py --model-dir /tmp/m7 --tokenizer $T --kind fixed --steps 15 \
    --json $OUT/$name.json "$@" 2>&1 | grep -v -e kernels-community -e "Loading weights" -e warn | tail -30 > $OUT/$name.log
  grep -E "^(baseline|firefly) |^loss curves" $OUT/$name.log | sed "s/^/$name: /"
}


run keep6_adamw_fused 150 --which firefly -- --compile_layers true --uncheckpointed_layers 6 --optimizer adamw_torch
