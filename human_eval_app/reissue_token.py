"""`firefly-judge reissue-token NAME --db DB`: a new token for an annotator who lost theirs.

The new token is printed once (only its hash is kept) and the old one stops working at once; the
annotator's votes, order and sides stay as they were.
"""
from __future__ import annotations

from firefly_eval.votes import VoteStore


def add_arguments(parser) -> None:
    parser.add_argument("name", help="the annotator's name, as given to add-annotator")
    parser.add_argument("--db", required=True, help="votes database")


def run(args) -> int:
    with VoteStore.open_existing(args.db) as store:
        token = store.reissue_token(args.name)
    print(token)
    return 0
