# Call 4 (issue 10): call 3's path with its two fixes (the compiler no longer keeps dequantised weights for the
# backward of an uncheckpointed layer: 20.0 GiB with 3 kept; packed SFT no longer recompiles when a batch's longest
# conversation changes):
#  baseline50 / keep5: fixed blocks, 50 steps, 5 layers kept (call 3: 12,134 tokens/s at 23.1 GiB, 0.38 GiB a layer
#    of it dequantised weights), loss curves; keep4 in case keep5 is over the baseline's 21.4 GiB;
#  sft_baseline / sft_firefly: the SFT mix, firefly with 5 layers kept, recompiles logged, one step profiled.
# Few files come back from a call: JSON per run, one log.
source .carry/activate && python3 -m compileall -q /tmp/carry-site >/dev/null 2>&1
T=.carry/data/tokenizers/chinese-llama2
S=$(date +%s)
timeout 100 python3 -c "import sys; sys.path.insert(0,'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('configs/shapes/llama2-7b.json'), 55296, Path('/tmp/m7'))" 2>&1 | tail -1
echo "model built: $(( $(date +%s) - S )) s"
run() {  # name timeout args...
  local name=$1 t=$2; shift 2; local s=$(date +%s)
  echo "=== $name" >> $OUT/all.log
  timeout $t python3 bench/train_throughput.py --model-dir /tmp/m7 --tokenizer $T --json $OUT/$name.json "$@" 2>&1 \
    | grep -v -e kernels-community -e "Loading weights" -e FutureWarning -e "warnings.warn" | tail -60 >> $OUT/all.log
  echo "$name: $(( $(date +%s) - s )) s"; tail -60 $OUT/all.log | grep -E "^(baseline|firefly) |idle between|Recompiling|  - [0-9]+/[0-9]+:" | head -6
}
F="--compile_layers true --optimizer adamw_torch --lora.fuse_shared_inputs true"
run baseline50 150 --kind fixed --steps 50 --which baseline
run keep5 130 --kind fixed --steps 50 --which firefly -- $F --uncheckpointed_layers 5
python3 - <<'P'
import json, os
o = os.environ["OUT"]
try:
    b = json.load(open(f"{o}/baseline50.json"))["rows"]["baseline"]["losses"]
    f = json.load(open(f"{o}/keep5.json"))["rows"]["firefly"]["losses"]
    d = [abs(x - y) for x, y in zip(b, f)]
    print(f"loss curves over {len(d)} steps: max |keep5 - baseline| = {max(d):.4f}, final {b[-1]:.4f} vs {f[-1]:.4f}")
except Exception as e:
    print("loss comparison:", e)
P
run sft_baseline 100 --kind sft --steps 15 --which baseline
TORCH_LOGS=recompiles run sft_firefly 130 --kind sft --steps 15 --profile 1 --which firefly -- $F --uncheckpointed_layers 5 --attn_implementation varlen
run keep4 90 --kind fixed --steps 15 --which firefly -- $F --uncheckpointed_layers 4
echo "total: $(( $(date +%s) - S )) s"
