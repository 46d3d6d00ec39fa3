# GPU call 3 (twelfth session, issue 11): full-set CMMLU agreement, subject group 1 of 4 (bench/NOTES.md):
# OpenCompass's own PPL path against ours on the same model; bench/cmmlu_shards.py adds the groups up.
set -u
BUDGET=${BUDGET:-580}
source .carry/activate || exit 1
python3 -m compileall -q /tmp/carry-site
t0=$(date +%s)
python3 -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('configs/shapes/llama2-7b.json'), 55296, Path('/tmp/l7'))"
cp --update=none .carry/data/tokenizers/chinese-llama2/* /tmp/l7/
echo "model ready at $(( $(date +%s) - t0 )) s"
timeout $(( BUDGET - ($(date +%s) - t0) )) python3 bench/eval_throughput.py cmmlu --model-dir /tmp/l7 \
    --data-dir .carry/data/cmmlu --json $OUT/cmmlu_g1.json --reference-subjects astronomy \
    chinese_civil_service_exam college_law college_medical_statistics computer_science computer_security \
    conceptual_physics construction_project_management education high_school_chemistry international_law \
    jurisprudence machine_learning professional_accounting professional_law professional_psychology \
    > $OUT/cmmlu_g1.log 2>&1
echo "cmmlu rc=$? at $(( $(date +%s) - t0 )) s"; grep -a -v -i "warn\|it/s\]" $OUT/cmmlu_g1.log | tail -25
