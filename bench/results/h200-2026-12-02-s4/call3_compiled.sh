# Call 3 (issue 10): compiled decoder layers with the checkpoint kept outside the compiled code.
# 1. compile_layers, every layer checkpointed, 20 steps + 1 profiled: speed and the memory floor P0;
# 2. fixed blocks, baseline and firefly-train 50 steps each (ratio, memory, loss curves), firefly with as many
#    uncheckpointed layers as fit under the baseline's 21.4 GiB at 0.7 GiB each (call 2: 31 GiB with none
#    recomputed against 11.5 with all);
# 3. the SFT length mix: baseline padded, firefly-train packed with varlen attention, same layers.
source .carry/activate && python3 -m compileall -q /tmp/carry-site >/dev/null 2>&1
T=.carry/data/tokenizers/chinese-llama2
run() {  # name timeout args...
  local name=$1 t=$2; shift 2
  timeout $t python3 bench/train_throughput.py --model-dir /tmp/m7 --tokenizer $T --json $OUT/$name.json "$@" 2>&1 \
    | grep -v -e kernels-community -e "Loading weights" -e warn | tail -45 > $OUT/$name.log
  grep -E "^(baseline|firefly) |^loss curves" $OUT/$name.log | sed "s/^/$name: /"
}
run compiled_ckpt 150 --kind fixed --steps 20 --profile 1 --which firefly -- --compile_layers true
P0=$(python3 -c "import json;print(json.load(open('$OUT/compiled_ckpt.json'))['rows']['firefly']['peak_gib'])" 2>/dev/null || echo 12)
N=$(python3 -c "print(max(0, min(32, int((21.0 - $P0) / 0.7))))")
echo "P0=$P0 GiB -> uncheckpointed_layers $N"
run fixed50 240 --kind fixed --steps 50 -- --compile_layers true --uncheckpointed_layers $N
run sft 170 --kind sft --steps 20 -- --compile_layers true --uncheckpointed_layers $N --attn_implementation varlen
