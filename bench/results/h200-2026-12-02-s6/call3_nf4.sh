# Call 3 (issue 10): after call 2's trace (forward CPU-bound: bitsandbytes' gemm_4bit path 0.34 ms of CPU a call;
# addmm copying every base output, 19 ms a step; SFT recompiling), with nf4_linear, the LoRA add in the fused
# kernel, SFT batches of one shape:
#  gpu_nf4: the CUDA test (compiled dequantisation and product bit-exact against bitsandbytes' kernels);
#  baseline50 / keep3: fixed blocks, 50 steps each (ratio, memory, loss curves), keep3 profiled one step;
#  sft_baseline / sft_firefly: the SFT mix, firefly profiled one step, recompiles and graph breaks logged;
#  keep5: fixed blocks with 5 layers kept (memory).
source .carry/activate && python3 -m compileall -q /tmp/carry-site >/dev/null 2>&1
T=.carry/data/tokenizers/chinese-llama2
S=$(date +%s)
timeout 90 python3 -m pytest -q -m gpu tests/train/test_nf4_linear.py -p no:cacheprovider 2>&1 | tail -3
timeout 100 python3 -c "import sys; sys.path.insert(0,'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('configs/shapes/llama2-7b.json'), 55296, Path('/tmp/m7'))" 2>&1 | tail -1
echo "model built: $(( $(date +%s) - S )) s"
run() {  # name timeout args...
  local name=$1 t=$2; shift 2; local s=$(date +%s)
  timeout $t python3 bench/train_throughput.py --model-dir /tmp/m7 --tokenizer $T --json $OUT/$name.json "$@" 2>&1 \
    | grep -v -e kernels-community -e "Loading weights" -e FutureWarning -e "warnings.warn" | tail -80 > $OUT/$name.txt
  echo "$name: $(( $(date +%s) - s )) s"; grep -E "^(baseline|firefly) |idle between|Recompiling|Graph break" $OUT/$name.txt | head -8
}
F="--compile_layers true --optimizer adamw_torch --lora.fuse_shared_inputs true"
run baseline50 150 --kind fixed --steps 50 --which baseline
run keep3 140 --kind fixed --steps 50 --profile 1 --which firefly -- $F --uncheckpointed_layers 3
python3 - <<'P'
import json, os
o = os.environ["OUT"]
try:
    b = json.load(open(f"{o}/baseline50.json"))["rows"]["baseline"]["losses"]
    f = json.load(open(f"{o}/keep3.json"))["rows"]["firefly"]["losses"]
    d = [abs(x - y) for x, y in zip(b, f)]
    print(f"loss curves over {len(d)} steps: max |keep3 - baseline| = {max(d):.4f}, final {b[-1]:.4f} vs {f[-1]:.4f}")
except Exception as e:
    print("loss comparison:", e)
P
run sft_baseline 100 --kind sft --steps 15 --which baseline
TORCH_LOGS=recompiles,graph_breaks run sft_firefly 130 --kind sft --steps 15 --profile 1 --which firefly -- $F --uncheckpointed_layers 3 --attn_implementation varlen
run keep5 100 --kind fixed --steps 15 --which firefly -- $F --uncheckpointed_layers 5
echo "total: $(( $(date +%s) - S )) s"
