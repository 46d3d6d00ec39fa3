# GPU call 1 (2026-12-02, fifth session): where CMMLU's inference loop goes. SDPA backends at the stem-chunk
# shapes; 3 subjects with the default SDPA choice and with cuDNN's attention off (same process setup);
# a torch.profiler timeline of the 3 subjects; the full set as users run it.
set -u
source .carry/activate || exit 1
python3 -m compileall -q /tmp/carry-site
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $OUT/gpu.txt
python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__)" | tee -a $OUT/gpu.txt
t0=$(date +%s)
timeout 90 python3 bench/sdpa_backends.py --shapes 12 --json $OUT/sdpa.json 2>&1 | grep -v -i warn | tee $OUT/sdpa.txt
python3 -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from train_throughput import make_random_model; make_random_model(Path('configs/shapes/llama2-7b.json'), 55296, Path('/tmp/l7'))"
cp .carry/data/tokenizers/chinese-llama2/* /tmp/l7/
echo "model built at $(( $(date +%s) - t0 )) s"
S="agronomy anatomy ancient_chinese"
for v in default nocudnn; do
  t1=$(date +%s.%N)
  timeout 150 python3 -c "
import sys, torch
if '$v' == 'nocudnn': torch.backends.cuda.enable_cudnn_sdp(False)
from firefly_eval.cli import main
sys.exit(main(['cmmlu', '--ckpt', '/tmp/l7', '--data-dir', '.carry/data/cmmlu', '--subjects', *'$S'.split(), '-o', '/tmp/c3_$v.json']))
" > $OUT/c3_$v.log 2>&1
  echo "3 subjects, $v: rc=$? $(python3 -c "print(round($(date +%s.%N) - $t1, 1))") s"
done
python3 -c "
import json, sys; sys.path.insert(0, 'bench'); from pathlib import Path; from eval_stages.cmmlu import compare
d = lambda v: Path(json.load(open(f'/tmp/c3_{v}.json'))['opencompass_summary']).parents[1] / 'predictions' / 'firefly'
r = compare(d('default'), d('nocudnn')); json.dump(r, open('$OUT/c3_default_vs_nocudnn.json', 'w'), indent=1)
print('default vs nocudnn: identical', r['identical'], 'of', r['questions'], 'max rel ppl diff', r['max_relative_ppl_difference'])
"
timeout 150 python3 bench/eval_profile.py --json $OUT/c3_profile.json -- cmmlu --ckpt /tmp/l7 \
  --data-dir .carry/data/cmmlu --subjects $S -o /tmp/c3_prof.json > $OUT/c3_profile.log 2>&1
echo "profile rc=$?"; grep -v -i "warn" $OUT/c3_profile.log | tail -40
t1=$(date +%s.%N)
timeout 230 python3 -m firefly_eval.cli cmmlu --ckpt /tmp/l7 --data-dir .carry/data/cmmlu -o /tmp/full.json > $OUT/full.log 2>&1
echo "full set rc=$? $(python3 -c "print(round($(date +%s.%N) - $t1, 1))") s"
cp /tmp/full.json $OUT/full_result.json 2>/dev/null
echo "total $(( $(date +%s) - t0 )) s"
