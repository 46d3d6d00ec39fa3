# The nineteenth session's GPU calls, each run by the device tool with carry [".carry"]
# (../shared/gpu/make-carry.sh eval --data); each call's log is callN_call.log. All at 592e504.
T13='python3 bench/train_throughput.py --shape configs/shapes/llama2-13b.json --recipe configs/llama2-13b-pretrain-qlora.yaml --model-dir /tmp/m13 --tokenizer .carry/data/tokenizers/chinese-llama2 --kind fixed'
T7='python3 bench/train_throughput.py --shape configs/shapes/llama2-7b.json --model-dir /tmp/l7 --tokenizer .carry/data/tokenizers/chinese-llama2'
# Call 1 (cold): the offload GPU test, the host link, the 13B recipe run and 10, 14, 20, 27 offloaded layers, 20 steps each
SHAPE=configs/shapes/llama2-13b.json MODEL=/tmp/m13 BUDGET=560 bash bench/gpu_call.sh \
  'python3 -m pytest -q -p no:cacheprovider -m gpu tests/train/test_offload.py' \
  'python3 bench/host_link_speed.py --json $OUT/link.json' \
  "$T13 --steps 20 --which firefly --json \$OUT/k13.json -- --uncheckpointed_layers 13" \
  "$T13 --steps 20 --which firefly --json \$OUT/k13_o10.json -- --uncheckpointed_layers 13 --offloaded_layers 10" \
  "$T13 --steps 20 --which firefly --json \$OUT/k13_o14.json -- --uncheckpointed_layers 13 --offloaded_layers 14" \
  "$T13 --steps 20 --which firefly --json \$OUT/k13_o20.json -- --uncheckpointed_layers 13 --offloaded_layers 20" \
  "$T13 --steps 20 --which firefly --json \$OUT/k13_o27.json -- --uncheckpointed_layers 13 --offloaded_layers 27"
# Call 2 (warm): the 13B pair at 20 offloaded layers, then 23, 14 kept with 20, and 17
SHAPE=configs/shapes/llama2-13b.json MODEL=/tmp/m13 BUDGET=560 bash bench/gpu_call.sh \
  "$T13 --steps 50 --json \$OUT/k13_o20_50.json -- --uncheckpointed_layers 13 --offloaded_layers 20" \
  "$T13 --steps 20 --which firefly --json \$OUT/k13_o23.json -- --uncheckpointed_layers 13 --offloaded_layers 23" \
  "$T13 --steps 20 --which firefly --json \$OUT/k14_o20.json -- --uncheckpointed_layers 14 --offloaded_layers 20" \
  "$T13 --steps 20 --which firefly --json \$OUT/k13_o17.json -- --uncheckpointed_layers 13 --offloaded_layers 17"
# Call 3 (warm): the 7B pair at 14 offloaded layers (30 steps), then 10, 18, and 9 kept with 14
BUDGET=400 bash bench/gpu_call.sh \
  "$T7 --recipe configs/llama2-7b-pretrain-qlora.yaml --kind fixed --steps 30 --json \$OUT/t7_k8_o14.json -- --uncheckpointed_layers 8 --offloaded_layers 14" \
  "$T7 --recipe configs/llama2-7b-pretrain-qlora.yaml --kind fixed --steps 20 --which firefly --json \$OUT/t7_k8_o10.json -- --uncheckpointed_layers 8 --offloaded_layers 10" \
  "$T7 --recipe configs/llama2-7b-pretrain-qlora.yaml --kind fixed --steps 20 --which firefly --json \$OUT/t7_k8_o18.json -- --uncheckpointed_layers 8 --offloaded_layers 18" \
  "$T7 --recipe configs/llama2-7b-pretrain-qlora.yaml --kind fixed --steps 20 --which firefly --json \$OUT/t7_k9_o14.json -- --uncheckpointed_layers 9 --offloaded_layers 14"
# Call 4 (warm): failed at once: --recipe configs/llama2-7b-sft-qlora.yaml is not a pretrain config (the bench
# loads its recipe as one; its --kind sft uses the pretrain recipe with the SFT keys as overrides)
# Call 5 (warm): the SFT mix pair, the SFT recipe's kept layers and attention
BUDGET=420 bash bench/gpu_call.sh \
  "$T7 --kind sft --steps 50 --json \$OUT/t7_sft.json -- --attn_implementation varlen --uncheckpointed_layers 5"
# Call 6 (warm): the 7B pair at 10 offloaded layers, 50 steps; the SFT mix with 10 offloaded layers and 5 or 8 kept
BUDGET=420 bash bench/gpu_call.sh \
  "$T7 --recipe configs/llama2-7b-pretrain-qlora.yaml --kind fixed --steps 50 --json \$OUT/t7_k8_o10_50.json -- --uncheckpointed_layers 8 --offloaded_layers 10" \
  "$T7 --kind sft --steps 20 --which firefly --json \$OUT/t7_sft_k5_o10.json -- --attn_implementation varlen --uncheckpointed_layers 5 --offloaded_layers 10" \
  "$T7 --kind sft --steps 20 --which firefly --json \$OUT/t7_sft_k8_o10.json -- --attn_implementation varlen --uncheckpointed_layers 8 --offloaded_layers 10"
# Call 7 (warm): the 13B pair at 20 offloaded layers again
SHAPE=configs/shapes/llama2-13b.json MODEL=/tmp/m13 BUDGET=330 bash bench/gpu_call.sh \
  "$T13 --steps 50 --json \$OUT/k13_o20_50b.json -- --uncheckpointed_layers 13 --offloaded_layers 20"
