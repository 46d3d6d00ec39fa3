# GPU call 1 (eleventh session, issue 11): decoding on SDPA's memory-efficient kernel (the decoder's
# DECODING_ATTENTION, built after the tenth session's calls): does a run repeat itself, and how fast is it;
# then TruthfulQA mc2 in full, stock lm-eval (batch auto) against ours with the levers built after the tenth
# session (batched tokenization, cheapest continuation passes, byte budget).
set -u
BUDGET=${BUDGET:-575}
source .carry/activate || exit 1
python3 -m compileall -q /tmp/carry-site
t0=$(date +%s)
python3 -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('configs/shapes/llama2-7b.json'), 55296, Path('/tmp/l7'))"
cp --update=none .carry/data/tokenizers/chinese-llama2/* /tmp/l7/
echo "model ready at $(( $(date +%s) - t0 )) s"
timeout 110 python3 bench/generate_row_order.py --model-dir /tmp/l7 --repeat \
    --settings default sdpa-efficient sdpa-cudnn --json $OUT/repeat_settings.json > $OUT/repeat_settings.log 2>&1
echo "repeat settings rc=$? at $(( $(date +%s) - t0 )) s"; grep -a "^\[\|Error" $OUT/repeat_settings.log
timeout 120 python3 bench/generate_row_order.py --model-dir /tmp/l7 --repeat --json $OUT/repeat.json > $OUT/repeat.log 2>&1
echo "repeat as built rc=$? at $(( $(date +%s) - t0 )) s"; grep -a -v -i "warn" $OUT/repeat.log | tail -8
timeout 200 python3 bench/eval_throughput.py generate --model-dir /tmp/l7 --reference-items 0 --no-plain \
    --json $OUT/gen.json > $OUT/gen.log 2>&1
echo "generate rc=$? at $(( $(date +%s) - t0 )) s"; grep -a -v -i "warn\|it/s\]" $OUT/gen.log | tail -14
timeout $(( BUDGET - ($(date +%s) - t0) )) python3 bench/eval_throughput.py leaderboard --model-dir /tmp/l7 \
    --data-dir .carry/data/english --tasks truthfulqa_mc2 --docs 0: --json $OUT/lb_tqa.json > $OUT/lb_tqa.log 2>&1
echo "leaderboard rc=$? at $(( $(date +%s) - t0 )) s"; grep -a -A8 "^unit" $OUT/lb_tqa.log; grep -a "^\[\|Error" $OUT/lb_tqa.log | head
