# GPU call 3 (eleventh session, issue 11): full-set leaderboard shards with the levers built after the tenth
# session: ARC-Challenge in full, then MMLU's 15 smallest subjects (group 1), stock lm-eval (batch auto)
# against ours. Added up by bench/leaderboard_shards.py.
set -u
BUDGET=${BUDGET:-470}
source .carry/activate || exit 1
python3 -m compileall -q /tmp/carry-site > /dev/null 2>&1
t0=$(date +%s)
python3 -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('configs/shapes/llama2-7b.json'), 55296, Path('/tmp/l7'))"
cp --update=none .carry/data/tokenizers/chinese-llama2/* /tmp/l7/
echo "model ready at $(( $(date +%s) - t0 )) s"
timeout $(( BUDGET - ($(date +%s) - t0) )) python3 bench/eval_throughput.py leaderboard --model-dir /tmp/l7 \
    --data-dir .carry/data/english --tasks arc_challenge --docs 0: --json $OUT/lb_arc.json > $OUT/lb_arc.log 2>&1
echo "leaderboard arc rc=$? at $(( $(date +%s) - t0 )) s"; grep -a -A4 "^unit" $OUT/lb_arc.log; grep -a "^\[\|Error" $OUT/lb_arc.log | head
timeout $(( BUDGET - ($(date +%s) - t0) )) python3 bench/eval_throughput.py leaderboard --model-dir /tmp/l7 \
    --data-dir .carry/data/english --tasks mmlu --mmlu-subjects global_facts medical_genetics abstract_algebra \
    business_ethics college_physics management us_foreign_policy jurisprudence public_relations machine_learning \
    computer_security college_chemistry international_law human_sexuality anatomy \
    --json $OUT/lb_mmlu1.json > $OUT/lb_mmlu1.log 2>&1
echo "leaderboard mmlu group 1 rc=$? at $(( $(date +%s) - t0 )) s"; grep -a -A4 "^unit" $OUT/lb_mmlu1.log; grep -a "^\[\|Error" $OUT/lb_mmlu1.log | head
