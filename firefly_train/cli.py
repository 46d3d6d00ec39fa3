"""`firefly-train`: parse, dispatch, nothing else."""
import sys

from firefly_core.cli import main_for

COMMANDS = {
    "pretrain": ("firefly_train.recipes.pretrain", "QLoRA/LoRA/full continued pretraining on raw text"),
    "sft": ("firefly_train.recipes.sft", "multi-turn instruction tuning (loss on assistant turns only)"),
    "merge": ("firefly_train.recipes.merge", "merge a LoRA checkpoint (and trained embeddings) into its base"),
    "plan": ("firefly_train.recipes.plan", "parameter counts and memory estimate for a config, no weights loaded"),
    "vocab": ("firefly_train.vocab.cli", "train, merge and measure tokenizers (vocabulary expansion)"),
    "prepare-model": ("firefly_train.recipes.prepare_model", "resolve a model reference to a local HF folder"),
}


def main(argv=None) -> int:
    return main_for("firefly-train", __doc__, COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
