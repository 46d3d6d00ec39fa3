# The eighteenth session's GPU calls, each run by the device tool with carry [".carry"]
# (../shared/gpu/make-carry.sh eval --data); each call's log is callN_call.log. All at d188cc6 + the GPU test's
# import (the masks from firefly_train/mask_kernel.py).
T13='python3 bench/train_throughput.py --shape configs/shapes/llama2-13b.json --recipe configs/llama2-13b-pretrain-qlora.yaml --model-dir /tmp/m13 --tokenizer .carry/data/tokenizers/chinese-llama2 --kind fixed'
T7='python3 bench/train_throughput.py --shape configs/shapes/llama2-7b.json --recipe configs/llama2-7b-pretrain-qlora.yaml --model-dir /tmp/l7 --tokenizer .carry/data/tokenizers/chinese-llama2 --kind fixed --steps 30'
# Call 1 (cold): the GPU tests of the masks, the fused LoRA path and the NF4 op; the mask draws (bench/mask_draw_speed.py,
# since merged into bench/dropout_speed.py as its packed-mask table); the 13B pair
SHAPE=configs/shapes/llama2-13b.json MODEL=/tmp/m13 BUDGET=560 bash bench/gpu_call.sh \
  'python3 -m pytest -q -p no:cacheprovider -m gpu tests/train/test_mask_kernel.py tests/train/test_fused_lora.py tests/train/test_nf4_linear.py' \
  'python3 bench/mask_draw_speed.py --json $OUT/masks.json' \
  "$T13 --steps 50 --json \$OUT/t13_k13_50.json -- --uncheckpointed_layers 13"
# Call 2 (warm): a 14th kept layer with smaller loss chunks, and a profile
SHAPE=configs/shapes/llama2-13b.json MODEL=/tmp/m13 BUDGET=560 bash bench/gpu_call.sh \
  "$T13 --steps 20 --which firefly --json \$OUT/t13_k14_c1024.json -- --uncheckpointed_layers 14 --loss_chunk_tokens 1024" \
  "$T13 --steps 20 --which firefly --json \$OUT/t13_k13_c1024.json -- --uncheckpointed_layers 13 --loss_chunk_tokens 1024" \
  "$T13 --steps 20 --which firefly --json \$OUT/t13_k14_c512.json -- --uncheckpointed_layers 14 --loss_chunk_tokens 512" \
  "$T13 --steps 10 --profile 3 --which firefly --json \$OUT/p13_k13.json -- --uncheckpointed_layers 13"
# Call 3 (cold): inductor's coordinate-descent tuning of the fused kernels, then also max-autotune of the products
SHAPE=configs/shapes/llama2-13b.json MODEL=/tmp/m13 BUDGET=545 bash bench/gpu_call.sh \
  "TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1 $T13 --steps 20 --which firefly --json \$OUT/t13_k13_cdt.json -- --uncheckpointed_layers 13" \
  "TORCHINDUCTOR_MAX_AUTOTUNE_GEMM=1 TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1 $T13 --steps 20 --which firefly --json \$OUT/t13_k13_mag.json -- --uncheckpointed_layers 13"
# Call 4 (warm): the 13B pair with coordinate-descent tuning (the baseline compiles nothing)
SHAPE=configs/shapes/llama2-13b.json MODEL=/tmp/m13 BUDGET=490 bash bench/gpu_call.sh \
  "TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1 $T13 --steps 50 --json \$OUT/t13_k13_cdt_50.json -- --uncheckpointed_layers 13"
# Call 5 (warm): the 7B pair
BUDGET=235 bash bench/gpu_call.sh "$T7 --json \$OUT/t7_k8.json -- --uncheckpointed_layers 8"
