"""`firefly-train plan --config FILE` (or `--model SHAPE_OR_FOLDER` + overrides): counts and memory, no weights."""
from __future__ import annotations

from dataclasses import dataclass

from firefly_train.config import load_config
from firefly_train.plan import format_plan, plan
from firefly_train.train_config import PretrainConfig, SftConfig

ACCEPTS_OVERRIDES = True


@dataclass
class PlanConfig(PretrainConfig, SftConfig):
    """Either command's config is accepted."""


def add_arguments(p):
    p.add_argument("--config", help="a pretrain or sft YAML config")
    p.add_argument("--model", help="shape JSON (configs/shapes/), HF folder or alias; overrides the config's")
    p.add_argument("--vocab_size", type=int, help="vocabulary size to plan for (e.g. 55296 after expansion)")


def run(args):
    overrides = list(args.overrides) + (["--model", args.model] if args.model else [])
    cfg = load_config(PlanConfig, args.config, overrides)
    print(format_plan(cfg, plan(cfg, args.vocab_size)))
