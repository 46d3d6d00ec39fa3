"""`firefly-judge export --db DB -o votes.csv`: every vote, one row each."""
from __future__ import annotations

from firefly_core.errors import FireflyError
from firefly_eval.votes import read_votes, write_votes_csv


def add_arguments(parser) -> None:
    parser.add_argument("--db", required=True, help="votes database")
    parser.add_argument("-o", "--output", required=True, help="CSV file to write")


def run(args) -> int:
    votes = read_votes(args.db)
    try:
        write_votes_csv(args.output, votes)
    except OSError as e:
        raise FireflyError(f"cannot write {args.output}: {e.strerror}") from None
    print(f"wrote {len(votes)} votes to {args.output}")
    return 0
