"""`firefly-judge add-annotator NAME --db DB [--admin]`: prints the new token once (only its hash is kept)."""
from __future__ import annotations

from pathlib import Path

from firefly_core.errors import FireflyError
from firefly_eval.votes import VoteStore


def add_arguments(parser) -> None:
    parser.add_argument("name", help="the annotator's name (shown to admins in the results)")
    parser.add_argument("--db", required=True, help="votes database")
    parser.add_argument("--admin", action="store_true", help="may open the results page (/results); judges blind like anyone")
    parser.add_argument("--set", help="with --answers: create the database if it does not exist yet")
    parser.add_argument("--answers", nargs="+", metavar="ANSWERS.jsonl")


def run(args) -> int:
    if Path(args.db).is_file():
        store = VoteStore.open_existing(args.db)
    elif args.set and args.answers:
        from human_eval_app.session import Judging

        store = Judging.open(args.set, args.answers, args.db).store
    else:
        raise FireflyError(f"no votes database at {args.db}: pass --set and --answers to create it "
                           "(or start `firefly-judge serve` once)")
    with store:
        token = store.add_annotator(args.name, admin=args.admin)
    print(token)
    return 0
