# The fifteenth session's CPU loss check of fp8_base_products (2 cores, torch 2.13 CPU, code as committed with
# bench/fp8_loss.py): SmolLM2-135M, QLoRA, compiled layers, 40 steps of 4 x 256 tokens of the CNews sample.
# The fp32 and bf16 runs are shared (the second command reuses them from runs/bench-fp8-loss).
python bench/fp8_loss.py --data ../shared/data/corpus/cnews.val.subset.txt --steps 40 --scaling tensorwise --json fp8_loss_tensorwise.json
python bench/fp8_loss.py --data ../shared/data/corpus/cnews.val.subset.txt --steps 40 --scaling rowwise --json fp8_loss_rowwise.json
# The 8-bit state on the same settings (adamw_8bit_loss.json: these losses beside the runs above, joined by hand)
firefly-train pretrain --config configs/main_job/pretrain.yaml --data ../shared/data/corpus/cnews.val.subset.txt --train_embeddings false --compile_layers true --max_seq_length 256 --micro_batch_size 4 --max_steps 40 --learning_rate 0.001 --warmup_steps 2 --save_steps 41 -o runs/bench-fp8-loss/bf16-adamw8bit --precision bf16 --optimizer adamw_8bit
