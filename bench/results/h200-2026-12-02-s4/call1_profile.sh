# Call 1 (issue 10): GEMM rates per way of computing a frozen linear; the Trainer(bf16=True) baseline against
# firefly-train's step on fixed 1,024-token blocks, 50 timed steps each (loss curves) and 2 profiled; then
# firefly-train with the fused LoRA path. Run from the repository root with carry [".carry"] (make-carry.sh train --data).
source .carry/activate && python3 -m compileall -q /tmp/carry-site >/dev/null 2>&1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv
T=.carry/data/tokenizers/chinese-llama2
timeout 90 python3 bench/gemm_rates.py --json $OUT/gemm_rates.json 2>&1 | grep -v kernels-community | tee $OUT/gemm_rates.txt
timeout 330 python3 bench/train_throughput.py --model-dir /tmp/m7 --tokenizer $T --kind fixed --steps 50 --profile 2 \
  --json $OUT/fixed_both.json 2>&1 | grep -v kernels-community | tail -80 | tee $OUT/fixed_both.log
timeout 150 python3 bench/train_throughput.py --model-dir /tmp/m7 --tokenizer $T --kind fixed --steps 20 --profile 2 \
  --which firefly --json $OUT/fixed_fused.json -- --lora.fuse_shared_inputs true 2>&1 | tail -40 | tee $OUT/fixed_fused.log
