"""`firefly-judge`: parse, dispatch, nothing else. The bare form `firefly-judge --set ...` means `serve`."""
import sys

from firefly_core.cli import main_for

COMMANDS = {
    "serve": ("human_eval_app.serve", "serve the blind pairwise judging app (binds 127.0.0.1 by default)"),
    "add-annotator": ("human_eval_app.annotators", "create an annotator and print their token (shown once)"),
    "reissue-token": ("human_eval_app.reissue_token", "print a new token for an annotator (the old one stops working)"),
    "export": ("human_eval_app.export", "write every vote of a database as CSV"),
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["serve", *argv]
    return main_for("firefly-judge", __doc__, COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
