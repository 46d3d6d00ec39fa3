# GPU call 4 (eleventh session, issue 11): full-set leaderboard shards with the levers built after the tenth
# session: MMLU group 2 (the next 12 subjects by size), stock lm-eval (batch auto)
# against ours. Added up by bench/leaderboard_shards.py.
set -u
BUDGET=${BUDGET:-280}
source .carry/activate || exit 1
python3 -m compileall -q /tmp/carry-site > /dev/null 2>&1
t0=$(date +%s)
python3 -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('configs/shapes/llama2-7b.json'), 55296, Path('/tmp/l7'))"
cp --update=none .carry/data/tokenizers/chinese-llama2/* /tmp/l7/
echo "model ready at $(( $(date +%s) - t0 )) s"
timeout $(( BUDGET - ($(date +%s) - t0) )) python3 bench/eval_throughput.py leaderboard --model-dir /tmp/l7 \
    --data-dir .carry/data/english --tasks mmlu --mmlu-subjects electrical_engineering college_biology college_mathematics astronomy \
    high_school_physics virology logical_fallacies world_religions high_school_government_and_politics \
    high_school_geography sociology high_school_chemistry \
    --json $OUT/lb_mmlu2.json > $OUT/lb_mmlu2.log 2>&1
echo "leaderboard mmlu group 2 rc=$? at $(( $(date +%s) - t0 )) s"; grep -a -A4 "^unit" $OUT/lb_mmlu2.log; grep -a "^\[\|Error" $OUT/lb_mmlu2.log | head
