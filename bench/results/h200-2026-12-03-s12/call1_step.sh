# GPU call 1 (twelfth session, issue 11): the matrix-product decoding step (firefly_eval/step_attention.py, built
# after the eleventh session's calls). One layer's step by every way (bench/step_attention_speed.py), the step's
# GPU test, whether decoding repeats itself, and the generate stage's speed twice (the second process finds
# inductor's on-disk caches warm, as a user's second run does).
set -u
BUDGET=${BUDGET:-580}
source .carry/activate || exit 1
python3 -m compileall -q /tmp/carry-site
t0=$(date +%s)
L=$OUT/call1.log
left() { echo $(( BUDGET - ($(date +%s) - t0) )); }
section() { echo "=== $1 rc=$2 at $(( $(date +%s) - t0 )) s" | tee -a $L; }
python3 -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('configs/shapes/llama2-7b.json'), 55296, Path('/tmp/l7'))"
cp --update=none .carry/data/tokenizers/chinese-llama2/* /tmp/l7/
section "model ready" 0
timeout 60 python3 bench/step_attention_speed.py --json $OUT/step.json >> $L 2>&1
section "step ways" $?; grep -a -A8 "^cuda" $L
timeout 90 python3 -m pytest -m gpu -q -p no:cacheprovider tests/eval/test_generate.py >> $L 2>&1
section "gpu test" $?; tail -3 $L
timeout 100 python3 bench/generate_row_order.py --model-dir /tmp/l7 --repeat --settings matmul-step sdpa-efficient \
    --json $OUT/repeat_settings.json >> $L 2>&1
section "repeat settings" $?; grep -a "^\[\|Error" $L | tail -6
for run in cold warm; do
  timeout 150 python3 bench/eval_throughput.py generate --model-dir /tmp/l7 --reference-items 0 --no-plain \
      --json $OUT/gen_$run.json >> $L 2>&1
  section "generate $run" $?; grep -a -v -i "warn\|it/s\]" $L | tail -12
done
timeout $(left) python3 bench/generate_row_order.py --model-dir /tmp/l7 --repeat --json $OUT/repeat.json >> $L 2>&1
section "repeat as built" $?; grep -a -v -i "warn" $L | tail -8
