"""Stages of bench/eval_throughput.py: each has `add_arguments(parser)` and `run(args) -> dict`."""
