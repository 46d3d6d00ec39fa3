# The seventeenth session's GPU calls, each run by the device tool with carry [".carry"]
# (../shared/gpu/make-carry.sh eval --data); each call's log is callN_call.log.
T13='python3 bench/train_throughput.py --shape configs/shapes/llama2-13b.json --recipe configs/llama2-13b-pretrain-qlora.yaml --model-dir /tmp/m13 --tokenizer .carry/data/tokenizers/chinese-llama2 --kind fixed'
T7='python3 bench/train_throughput.py --shape configs/shapes/llama2-7b.json --recipe configs/llama2-7b-pretrain-qlora.yaml --model-dir /tmp/l7 --tokenizer .carry/data/tokenizers/chinese-llama2 --kind fixed --steps 30'
# Call 1 (cold), masks from torch.randint (the first version of keep_bits); ab/nf4_linear_torchops.py was an
# untracked copy of f76df8b's firefly_train/nf4_linear.py (inductor's dequantisation), swapped in for one run
SHAPE=configs/shapes/llama2-13b.json MODEL=/tmp/m13 BUDGET=545 bash bench/gpu_call.sh \
  'python3 -m pytest -q -p no:cacheprovider -m gpu tests/train/test_nf4_linear.py tests/train/test_fused_lora.py' \
  'python3 bench/nf4_dequant_speed.py --shape configs/shapes/llama2-13b.json --repeats 20 --json $OUT/deq13.json' \
  "$T13 --steps 30 --which firefly --json \$OUT/t13_new_k13.json -- --uncheckpointed_layers 13" \
  "cp firefly_train/nf4_linear.py /tmp/nf4_new.py && cp ab/nf4_linear_torchops.py firefly_train/nf4_linear.py && $T13 --steps 30 --which firefly --json \$OUT/t13_torchops_k13.json -- --uncheckpointed_layers 13; cp /tmp/nf4_new.py firefly_train/nf4_linear.py" \
  "$T13 --steps 30 --which firefly --json \$OUT/t13_new_k11.json -- --uncheckpointed_layers 11"
# Call 2 (warm), the same code: draw timings (an inline script timing rand_like, randint, random_, rand and
# keep_bits on an 8,192 x 13,824 tensor, 20 calls each after 3 warm-up calls; its output is call2_draw.txt), then
SHAPE=configs/shapes/llama2-13b.json MODEL=/tmp/m13 BUDGET=250 bash bench/gpu_call.sh \
  "$T13 --steps 10 --profile 3 --which firefly --json \$OUT/p13_new_k13.json -- --uncheckpointed_layers 13"
# Calls 3-5 at cfdb60c (masks from float32 rand). Call 3 (cold): draw timings again (call3_draw.txt), then the
# 50-step pair and a profile
SHAPE=configs/shapes/llama2-13b.json MODEL=/tmp/m13 BUDGET=540 bash bench/gpu_call.sh \
  "$T13 --steps 50 --json \$OUT/t13_k13_50.json -- --uncheckpointed_layers 13" \
  "$T13 --steps 10 --profile 3 --which firefly --json \$OUT/p13_k13.json -- --uncheckpointed_layers 13"
# Call 4 (warm): the 7B pair at 8 kept layers, and 9 kept
BUDGET=330 bash bench/gpu_call.sh \
  "$T7 --json \$OUT/t7_k8.json -- --uncheckpointed_layers 8" \
  "$T7 --which firefly --json \$OUT/t7_k9.json -- --uncheckpointed_layers 9"
# Call 5 (warm): the 13B pair again, another lease's baseline
SHAPE=configs/shapes/llama2-13b.json MODEL=/tmp/m13 BUDGET=420 bash bench/gpu_call.sh \
  "$T13 --steps 50 --json \$OUT/t13_k13_50_repeat.json -- --uncheckpointed_layers 13"
# Call 6 (cold) at ddbacb9: the GPU tests of the masks and the NF4 op on the code as committed (3 passed)
source .carry/activate; python3 -m pytest -q -p no:cacheprovider -m gpu tests/train/test_fused_lora.py tests/train/test_nf4_linear.py
