# Call 2 (issue 10; call 1 ran every layer in eval mode, see NOTES), 7B fixed blocks, the recipe's 5 layers kept:
#  baseline50: Trainer(bf16=True, paged_adamw_32bit), 50 steps, loss curve;
#  keep5: this session's path (a checkpointed layer's down_proj base product outside its checkpoint, computed once;
#    predicted 27 ms less a step: 11,702 -> about 12,150 tokens/s), 50 steps, then 3 profiled steps in a row as a
#    Chrome trace (the gaps at the step boundaries: the sixth session's missing 30 ms);
#  keep5_prev: the same code with last_product not installed (.carry/prev/firefly_train), 50 steps, same call.
# Few files come back from a call: JSON per run, one log, the trace.
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
  echo "$name: $(( $(date +%s) - s )) s"; tail -60 $OUT/all.log | grep -E "^(baseline|firefly) |idle between" | head -4
}
F="--compile_layers true --optimizer adamw_torch --lora.fuse_shared_inputs true --uncheckpointed_layers 5"
run baseline50 150 --kind fixed --steps 50 --which baseline
run keep5 170 --kind fixed --steps 50 --profile 3 --trace /tmp/keep5.trace.json --which firefly -- $F
gzip -c /tmp/keep5.trace.json > $OUT/keep5.trace.json.gz 2>/dev/null; ls -la $OUT/keep5.trace.json.gz
PYTHONPATH=$PWD/.carry/prev:$PYTHONPATH run keep5_prev 140 --kind fixed --steps 50 --which firefly -- $F
python3 - <<'P'
import json, os
o = os.environ["OUT"]
try:
    b = json.load(open(f"{o}/baseline50.json"))["rows"]["baseline"]["losses"]
    for name in ("keep5", "keep5_prev"):
        f = json.load(open(f"{o}/{name}.json"))["rows"]["firefly"]["losses"]
        d = [abs(x - y) for x, y in zip(b, f)]
        print(f"loss curves over {len(d)} steps: max |{name} - baseline| = {max(d):.4f}, final {b[-1]:.4f} vs {f[-1]:.4f}")
except Exception as e:
    print("loss comparison:", e)
P
echo "total: $(( $(date +%s) - S )) s"
