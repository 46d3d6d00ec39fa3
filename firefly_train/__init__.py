"""firefly-train: QLoRA continued pretraining, multi-turn SFT, vocabulary expansion, merge and planning."""

__version__ = "0.1.0"
