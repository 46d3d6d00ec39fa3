"""`firefly-judge serve --set SET --answers a.jsonl b.jsonl [...] --db votes.sqlite`.

SIGTERM and SIGINT (Ctrl-C) stop the server, then the database is checkpointed and closed, so it is one
file again (no votes left in `votes.sqlite-wal`). SIGINT is handled explicitly too: a process started in the
background by a non-interactive shell inherits SIGINT as ignored, and Python then leaves it ignored.
"""
from __future__ import annotations

import logging
import signal

from firefly_core.errors import FireflyError

log = logging.getLogger("firefly_judge")


def add_arguments(parser) -> None:
    parser.add_argument("--set", required=True, help="the evaluation set (.jsonl/.json, or the seed's .xlsx/.csv)")
    parser.add_argument("--answers", nargs="+", required=True, metavar="ANSWERS.jsonl",
                        help="one `firefly-eval generate` answers file per model (two or more)")
    parser.add_argument("--db", required=True, help="votes database (SQLite); created on first use")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860)


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # Gradio's serving loop stops its server on it and returns


def run(args) -> int:
    from human_eval_app.app import RESULTS_PATH, launch
    from human_eval_app.session import Judging

    judging = Judging.open(args.set, args.answers, args.db)
    n_annotators = len(judging.store.annotators())
    log.info("set %s: %d items, models %s, %d pair(s); %d annotator(s) in %s; results for admins at /%s",
             judging.set.id, len(judging.set.items), judging.store.models, len(judging.pairs), n_annotators,
             args.db, RESULTS_PATH)
    if n_annotators == 0:
        log.warning("no annotators yet: create them with `firefly-judge add-annotator NAME --db %s [--admin]`",
                    args.db)
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        launch(judging, host=args.host, port=args.port)
    except OSError as e:
        raise FireflyError(f"cannot serve on {args.host}:{args.port}: {e}") from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        judging.store.close()
        log.info("stopped; %s checkpointed and closed", args.db)
    return 0
