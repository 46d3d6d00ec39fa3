# The seventeenth session's CPU loss check of the fused LoRA path's masks and the NF4 op (2 cores, torch 2.13 CPU,
# code at 56edd4d): SmolLM2-135M, QLoRA, compiled layers, 40 steps of 4 x 256 tokens of the CNews sample, the
# fifteenth session's bf16 settings (bench/results/cpu-2026-12-03-s15). masks_loss.json joins the losses by hand.
for way in bf16 bf16-fused; do
  extra=""; [ $way = bf16-fused ] && extra="--lora.fuse_shared_inputs true"
  firefly-train pretrain --config configs/main_job/pretrain.yaml --data ../shared/data/corpus/cnews.val.subset.txt --train_embeddings false --compile_layers true --max_seq_length 256 --micro_batch_size 4 --max_steps 40 --learning_rate 0.001 --warmup_steps 2 --save_steps 41 -o runs/masks-loss/$way --precision bf16 $extra
done
