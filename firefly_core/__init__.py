"""What the three products stand on: training, evaluation and the judging app all import from here, and
this package imports none of them.

- `errors.py`: the one family of errors a user can fix (`FireflyError`, `InputError` naming file, line, field).
- `io.py`: atomic writes, JSON/JSONL reading with located errors, file hashes.
- `cli.py`: the command-line shell every console script shares (subcommand registry, one-line errors, exit 2).
- `models.py`: model and checkpoint references (embedded alias, HF folder, cached hub id, firefly-train run)
  and loading them for inference.
- `templates.py`: the chat-template registry, used to train on conversations and to prompt for answers.
- `provenance.py`: library versions and git commit, recorded in every result file.
- `schemas.py`: one schema per file kind, checked by its writer and by every reader (docs/CONTRACTS.md's
  field tables are generated from it).
"""
