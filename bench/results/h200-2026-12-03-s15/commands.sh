# The fifteenth session's four GPU calls, each run by the device tool with carry [".carry"]
# (../shared/gpu/make-carry.sh eval --data) at code 288ffd5; each call's log is callN_call.log.
# Call 1 (cold start), timeout_s 600: CMMLU's last 14 subjects against OpenCompass (issue 11)
BUDGET=400 bash bench/gpu_call.sh \
  'python3 bench/eval_throughput.py cmmlu --model-dir /tmp/l7 --data-dir .carry/data/cmmlu --reference-subjects chinese_driving_rule chinese_food_culture college_medicine economics elementary_chinese elementary_commonsense elementary_mathematics high_school_biology management marketing nutrition public_relations sports_science world_history --json $OUT/cmmlu_g4b.json'
# Call 2 (cold start: the machine had gone back), timeout_s 600: call E of bench/NOTES.md (issue 10)
SHAPE=configs/shapes/llama2-13b.json MODEL=/tmp/m13 BUDGET=420 bash bench/gpu_call.sh \
  'python3 bench/dropout_speed.py --tokens 8192 --widths 13824 5120 --json $OUT/dropout.json' \
  'python3 bench/gemm_rates.py --hidden 5120 --intermediate 13824 --json $OUT/gemm13.json' \
  'python3 bench/train_throughput.py --shape configs/shapes/llama2-13b.json --recipe configs/llama2-13b-pretrain-qlora.yaml --model-dir /tmp/m13 --tokenizer .carry/data/tokenizers/chinese-llama2 --kind fixed --steps 30 --json $OUT/t13.json'
# Call 3 (warm), timeout_s 600: call F (without --profile: left out to save device time)
SHAPE=configs/shapes/llama2-13b.json MODEL=/tmp/m13 BUDGET=560 bash bench/gpu_call.sh \
  'python3 bench/train_throughput.py --shape configs/shapes/llama2-13b.json --recipe configs/llama2-13b-pretrain-qlora.yaml --model-dir /tmp/m13 --tokenizer .carry/data/tokenizers/chinese-llama2 --kind fixed --steps 30 --which firefly --json $OUT/t13_eager.json -- --compile_eager_dropout true' \
  'python3 bench/train_throughput.py --shape configs/shapes/llama2-13b.json --recipe configs/llama2-13b-pretrain-qlora.yaml --model-dir /tmp/m13 --tokenizer .carry/data/tokenizers/chinese-llama2 --kind fixed --steps 30 --which firefly --json $OUT/t13_fp8.json -- --compile_eager_dropout true --fp8_base_products tensorwise' \
  'python3 bench/train_throughput.py --shape configs/shapes/llama2-13b.json --recipe configs/llama2-13b-pretrain-qlora.yaml --model-dir /tmp/m13 --tokenizer .carry/data/tokenizers/chinese-llama2 --kind fixed --steps 30 --which firefly --json $OUT/t13_8bit.json -- --compile_eager_dropout true --optimizer adamw_8bit --uncheckpointed_layers 7' \
  'python3 bench/train_throughput.py --shape configs/shapes/llama2-13b.json --recipe configs/llama2-13b-pretrain-qlora.yaml --model-dir /tmp/m13 --tokenizer .carry/data/tokenizers/chinese-llama2 --kind fixed --steps 30 --which firefly --json $OUT/t13_all.json -- --compile_eager_dropout true --fp8_base_products tensorwise --optimizer adamw_8bit --uncheckpointed_layers 7'
# Call 4 (warm), timeout_s 480: call G, the 50-step loss check of the eager masks with FP8 forward products
SHAPE=configs/shapes/llama2-13b.json MODEL=/tmp/m13 BUDGET=420 bash bench/gpu_call.sh \
  'python3 bench/train_throughput.py --shape configs/shapes/llama2-13b.json --recipe configs/llama2-13b-pretrain-qlora.yaml --model-dir /tmp/m13 --tokenizer .carry/data/tokenizers/chinese-llama2 --kind fixed --steps 50 --json $OUT/t13_loss50.json -- --compile_eager_dropout true --fp8_base_products tensorwise'
# Then, on the CPU: the full CMMLU agreement over all five shard files
python bench/cmmlu_shards.py bench/results/h200-2026-12-03-s12/call3_cmmlu_g1.json \
  bench/results/h200-2026-12-03-s13/call3_cmmlu_g2.json bench/results/h200-2026-12-03-s14/call3_cmmlu_g3.json \
  bench/results/h200-2026-12-03-s14/call3_cmmlu_g4a.json bench/results/h200-2026-12-03-s15/call1_cmmlu_g4b.json \
  --data-dir ../shared/data/cmmlu
