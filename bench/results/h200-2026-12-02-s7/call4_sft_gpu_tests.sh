# Call 4 (issue 10; a first try found no machine and cost 121 s, so the 13B profile planned here was dropped):
#  sft_baseline / sft_firefly: the 7B SFT length mix with this session's code (the recipe's 5 layers kept, varlen);
#  the GPU tests that need no embedded model.
source .carry/activate && python3 -m compileall -q /tmp/carry-site >/dev/null 2>&1
T=.carry/data/tokenizers/chinese-llama2
S=$(date +%s)
timeout 100 python3 -c "import sys; sys.path.insert(0,'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('configs/shapes/llama2-7b.json'), 55296, Path('/tmp/m7'))" 2>&1 | tail -1
echo "7B built: $(( $(date +%s) - S )) s"
run() {  # name timeout args...
  local name=$1 t=$2; shift 2; local s=$(date +%s)
  echo "=== $name" >> $OUT/all.log
  timeout $t python3 bench/train_throughput.py --tokenizer $T --json $OUT/$name.json "$@" 2>&1 \
    | grep -v -e kernels-community -e "Loading weights" -e FutureWarning -e "warnings.warn" | tail -60 >> $OUT/all.log
  echo "$name: $(( $(date +%s) - s )) s"; tail -60 $OUT/all.log | grep -E "^(baseline|firefly) |idle between" | head -4
}
run sft_baseline 100 --model-dir /tmp/m7 --kind sft --steps 15 --which baseline
run sft_firefly 110 --model-dir /tmp/m7 --kind sft --steps 15 --which firefly -- --attn_implementation varlen
echo "=== pytest -m gpu" >> $OUT/all.log
timeout 90 python3 -m pytest -q -m gpu -p no:cacheprovider tests/train/test_nf4_linear.py tests/train/test_chunked_loss.py \
  tests/eval/test_bits_per_char.py 2>&1 | tail -15 >> $OUT/all.log
tail -3 $OUT/all.log
echo "total: $(( $(date +%s) - S )) s"
