# The sixteenth session's GPU calls, each run by the device tool with carry [".carry"]
# (../shared/gpu/make-carry.sh eval --data); each call's log is callN_call.log. A first attempt got no machine.
# Call 1 (cold start), code at d94c3a0 (with the Triton kernel, removed afterwards), timeout_s 580
SHAPE=configs/shapes/llama2-13b.json MODEL=/tmp/m13 BUDGET=530 bash bench/gpu_call.sh \
  'python3 -m pytest -q -p no:cacheprovider -m gpu tests/train/test_nf4_kernel.py tests/train/test_nf4_linear.py' \
  'python3 bench/nf4_dequant_speed.py --shape configs/shapes/llama2-13b.json --json $OUT/deq13.json' \
  'python3 bench/train_throughput.py --shape configs/shapes/llama2-13b.json --recipe configs/llama2-13b-pretrain-qlora.yaml --model-dir /tmp/m13 --tokenizer .carry/data/tokenizers/chinese-llama2 --kind fixed --steps 30 --which firefly --json $OUT/t13_kernel_k11.json -- --uncheckpointed_layers 11' \
  'FIREFLY_NF4_KERNEL=torch python3 bench/train_throughput.py --shape configs/shapes/llama2-13b.json --recipe configs/llama2-13b-pretrain-qlora.yaml --model-dir /tmp/m13 --tokenizer .carry/data/tokenizers/chinese-llama2 --kind fixed --steps 30 --which firefly --json $OUT/t13_torch_k11.json -- --uncheckpointed_layers 11'
# Calls 2-5 at 67e3e1c. Call 2 (cold): the 13B recipe at 11 kept layers, the 50-step check against the baseline
SHAPE=configs/shapes/llama2-13b.json MODEL=/tmp/m13 BUDGET=520 bash bench/gpu_call.sh \
  'python3 bench/train_throughput.py --shape configs/shapes/llama2-13b.json --recipe configs/llama2-13b-pretrain-qlora.yaml --model-dir /tmp/m13 --tokenizer .carry/data/tokenizers/chinese-llama2 --kind fixed --steps 50 --json $OUT/t13_recipe50.json'
# Call 3 (warm): the 7B pair at 7 kept layers, and 8 kept
BUDGET=400 bash bench/gpu_call.sh \
  'python3 bench/train_throughput.py --shape configs/shapes/llama2-7b.json --recipe configs/llama2-7b-pretrain-qlora.yaml --model-dir /tmp/l7 --tokenizer .carry/data/tokenizers/chinese-llama2 --kind fixed --steps 30 --json $OUT/t7_k7.json -- --uncheckpointed_layers 7' \
  'python3 bench/train_throughput.py --shape configs/shapes/llama2-7b.json --recipe configs/llama2-7b-pretrain-qlora.yaml --model-dir /tmp/l7 --tokenizer .carry/data/tokenizers/chinese-llama2 --kind fixed --steps 30 --which firefly --json $OUT/t7_k8.json -- --uncheckpointed_layers 8'
# Call 4 (warm): where the 13B recipe's step goes
SHAPE=configs/shapes/llama2-13b.json MODEL=/tmp/m13 BUDGET=300 bash bench/gpu_call.sh \
  'python3 bench/train_throughput.py --shape configs/shapes/llama2-13b.json --recipe configs/llama2-13b-pretrain-qlora.yaml --model-dir /tmp/m13 --tokenizer .carry/data/tokenizers/chinese-llama2 --kind fixed --steps 10 --profile 3 --which firefly --json $OUT/p13_recipe.json'
# Call 5 (cold): inductor's own dropout masks, 50 steps against the baseline
SHAPE=configs/shapes/llama2-13b.json MODEL=/tmp/m13 BUDGET=420 bash bench/gpu_call.sh \
  'python3 bench/train_throughput.py --shape configs/shapes/llama2-13b.json --recipe configs/llama2-13b-pretrain-qlora.yaml --model-dir /tmp/m13 --tokenizer .carry/data/tokenizers/chinese-llama2 --kind fixed --steps 50 --json $OUT/t13_inductor_masks50.json -- --compile_eager_dropout false'
