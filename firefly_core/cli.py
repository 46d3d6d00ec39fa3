"""The command-line shell every console script shares: subcommand registry, one-line errors, exit 2.

Each subcommand lives in its own module exposing `add_arguments(parser)` and `run(args) -> int | None`;
the registry maps names to module paths so a command imports only what it uses.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from firefly_core.errors import FireflyError


def main_for(prog: str, description: str, commands: dict[str, tuple[str, str]], argv=None) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    modules = {}
    for name, (module, help_text) in commands.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:  # import only the module of the command being run
            modules[name] = importlib.import_module(module)
            modules[name].add_arguments(p)
    args, extra = parser.parse_known_args(argv)
    mod = modules[args.command]
    if extra and not getattr(mod, "ACCEPTS_OVERRIDES", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    try:
        rc = mod.run(args)
    except FireflyError as e:
        print(f"{prog} {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog} {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)
