# The fifteenth session's CPU loss check of fp8_base_products (2 cores, torch 2.13 CPU, code as committed with
# bench/fp8_loss.py): SmolLM2-135M, QLoRA, compiled layers, 40 steps of 4 x 256 tokens of the CNews sample.
# The fp32 and bf16 runs are shared (the second command reuses them from runs/bench-fp8-loss).
python bench/fp8_loss.py --data ../shared/data/corpus/cnews.val.subset.txt --steps 40 --scaling tensorwise --json fp8_loss_tensorwise.json
python bench/fp8_loss.py --data ../shared/data/corpus/cnews.val.subset.txt --steps 40 --scaling rowwise --json fp8_loss_rowwise.json
