"""What `pretrain` and `sft` share on the command line: --config, -o, --print-keys, --key value overrides."""
from __future__ import annotations

from firefly_train.config import describe, load_config

ACCEPTS_OVERRIDES = True


def add_arguments(p):
    p.add_argument("--config", help="YAML config (see configs/); any key can be overridden with --key value")
    p.add_argument("-o", "--output_dir", help="run folder (resumed when it holds checkpoints)")
    p.add_argument("--print-keys", action="store_true", help="print every config key with its default and help")


def keys_table(cls) -> str:
    rows = ["| key | default | help |", "|---|---|---|"]
    for key, text, default in describe(cls):
        rows.append(f"| `{key}` | `{default!r}` | {text} |")
    return "\n".join(rows)


def train_or_print_keys(cls, command: str, data_fn, args) -> dict | None:
    """`--print-keys` prints the config table; otherwise train. The run_info on the main process, else None."""
    if args.print_keys:
        print(keys_table(cls))
        return None
    from firefly_train.trainer import train

    return train(load(cls, args), command, data_fn)


def load(cls, args):
    overrides = list(args.overrides)
    if args.output_dir:
        overrides += ["--output_dir", args.output_dir]
    return load_config(cls, args.config, overrides)
