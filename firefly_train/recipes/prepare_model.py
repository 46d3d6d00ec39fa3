"""`firefly-train prepare-model REF`: resolve (and for embedded aliases, convert once) a model; print its folder."""
from firefly_core.models import DEFAULT_MODEL, resolve_model


def add_arguments(p):
    p.add_argument("model", nargs="?", default=DEFAULT_MODEL, help="alias, HF folder or cached hub id")


def run(args):
    print(resolve_model(args.model))
