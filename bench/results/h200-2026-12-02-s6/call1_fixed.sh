# Call 1 (issue 10), fixed 1,024-token blocks, 7B seed recipe shape:
#  baseline50: transformers' Trainer(bf16, paged_adamw_32bit), 50 steps (ratio and the 50-step loss curve);
#  keep3:      firefly-train compiled, torch's fused AdamW (bitsandbytes' step synchronises after every one of its
#              450 parameters), fuse_shared_inputs, 3 layers not recomputed (fits the baseline's 16.8 + 4.6 GiB),
#              50 steps + 1 profiled (GPU idle between kernels, by CPU op);
#  keep3_paged: the same with the recipe's paged_adamw_32bit: what the optimizer alone is worth.
source .carry/activate && python3 -m compileall -q /tmp/carry-site >/dev/null 2>&1
T=.carry/data/tokenizers/chinese-llama2
S=$(date +%s)
timeout 100 python3 -c "import sys; sys.path.insert(0,'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('configs/shapes/llama2-7b.json'), 55296, Path('/tmp/m7'))" 2>&1 | tail -2
echo "model built: $(( $(date +%s) - S )) s"
run() {  # name timeout args...
  local name=$1 t=$2; shift 2; local s=$(date +%s)
  timeout $t python3 bench/train_throughput.py --model-dir /tmp/m7 --tokenizer $T --json $OUT/$name.json "$@" 2>&1 \
    | grep -v -e kernels-community -e "Loading weights" -e FutureWarning -e "warnings.warn" | tail -60 > $OUT/$name.log
  echo "$name: $(( $(date +%s) - s )) s"; grep -E "^(baseline|firefly) " $OUT/$name.log
}
F="--compile_layers true --optimizer adamw_torch --lora.fuse_shared_inputs true"
run baseline50 170 --kind fixed --steps 50 --which baseline
run keep3 150 --kind fixed --steps 50 --profile 1 --which firefly -- $F --uncheckpointed_layers 3
run keep3_paged 120 --kind fixed --steps 15 --which firefly -- $F --uncheckpointed_layers 3 --optimizer paged_adamw_32bit
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
echo "total: $(( $(date +%s) - S )) s"
