"""One schema per file kind: the fields of every result and log file the stages hand each other, in one place.

Writers check what they are about to write (`checked`: a mismatch is a bug in the writer, a `ValueError`);
readers check what they read (`validate`: an `InputError` naming the file, the line and the field as a dotted
path such as `tasks.arc_challenge.value` or `pairs[0].win`). The field tables of docs/CONTRACTS.md are generated
from here (`python -m firefly_core.schemas docs/CONTRACTS.md` rewrites them; a test checks they are current).

The language: scalars (`INT`, `NUMBER` (finite), `STR`, `BOOL`, ...), `Const`, `Enum`, `Nullable`, `ListOf`,
`MappingOf` and `Object`. An object names its fields; a field is required unless marked optional (written only in
some cases, or missing from files of earlier versions); fields an object does not name are ignored, so a newer
writer's additions do not break an older reader. What the language cannot say (counts that must add up, names
from the benchmark registry, texts that must match) the readers check themselves.
"""
from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from firefly_core.errors import InputError
from firefly_core.io import write_text


class Mismatch(Exception):
    """Where (a dotted field path, "" for the whole object) and how a value does not fit its schema."""

    def __init__(self, where: str, message: str):
        super().__init__(f"field '{where}': {message}" if where else message)
        self.where, self.message = where, message


def _shown(value) -> str:
    """A value as an error message quotes it: short scalars as they are, anything else by its type."""
    if value is None or isinstance(value, (bool, int, float)) or (isinstance(value, str) and len(value) <= 40):
        return repr(value)
    return type(value).__name__


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# -- the language ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scalar:
    doc: str  # as CONTRACTS.md writes the type
    expected: str  # as an error message does
    test: Callable[[Any], bool]

    def check(self, value, where: str) -> None:
        if not self.test(value):
            raise Mismatch(where, f"expected {self.expected}, got {_shown(value)}")


INT = Scalar("int", "int", _is_int)
POSITIVE_INT = Scalar("int > 0", "a positive integer", lambda v: _is_int(v) and v > 0)
NUMBER = Scalar("number", "a finite number", lambda v: _is_number(v) and math.isfinite(v))
LOSS = Scalar("number (NaN once training diverges)", "a number", _is_number)
STR = Scalar("str", "str", lambda v: isinstance(v, str))
BOOL = Scalar("bool", "bool", lambda v: isinstance(v, bool))


@dataclass(frozen=True)
class Const:
    """One allowed value (`format`, `kind`); `message` has `{got}` for the value found."""
    value: Any
    message: str

    @property
    def doc(self) -> str:
        return f'"{self.value}"' if isinstance(self.value, str) else repr(self.value)

    def check(self, value, where: str) -> None:
        if type(value) is not type(self.value) or value != self.value:
            raise Mismatch(where, self.message.format(got=_shown(value)))


class Enum:
    def __init__(self, *values: str):
        self.values = values
        quoted = [f'"{v}"' for v in values]
        self.doc = " or ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)
        self.expected = "one of " + ", ".join(repr(v) for v in values)

    def check(self, value, where: str) -> None:
        if not isinstance(value, str) or value not in self.values:
            raise Mismatch(where, f"expected {self.expected}, got {_shown(value)}")


class Nullable:
    step = ""  # what a field path inside it adds (see `_rows`)

    def __init__(self, inner):
        self.inner = inner
        self.doc, self.expected = f"{inner.doc} or null", f"{inner.expected} or null"

    def check(self, value, where: str) -> None:
        if value is None:
            return
        try:
            self.inner.check(value, where)
        except Mismatch as e:
            if e.where != where:  # a field inside: its own message
                raise
            raise Mismatch(where, f"expected {self.expected}, got {_shown(value)}") from None


class ListOf:
    step = "[]"

    def __init__(self, inner, length: int | None = None, doc: str | None = None):
        self.inner, self.length = inner, length
        self.doc = doc or f"[{inner.doc}]"
        self.expected = doc or "a list"

    def check(self, value, where: str) -> None:
        if not isinstance(value, list) or (self.length is not None and len(value) != self.length):
            raise Mismatch(where, f"expected {self.expected}, got {_shown(value)}")
        for i, v in enumerate(value):
            self.inner.check(v, f"{where}[{i}]")


class MappingOf:
    """An object whose keys are names (subjects, tokenizers, libraries), each with a value of one type."""

    def __init__(self, inner, key: str = "name"):
        self.inner, self.step = inner, f".<{key}>"
        self.doc, self.expected = f"{{{key}: {inner.doc}}}", "an object"

    def check(self, value, where: str) -> None:
        if not isinstance(value, dict):
            raise Mismatch(where, f"expected an object, got {_shown(value)}")
        for k, v in value.items():
            self.inner.check(v, f"{where}.{k}" if where else k)


@dataclass(frozen=True)
class Field:
    type: Any
    note: str = ""
    optional: bool = False


class Object:
    """Named fields (a type, or a `Field` with a note or `optional=True`); other fields are ignored."""
    doc, expected = "object", "an object"

    def __init__(self, **fields):
        self.fields = {name: f if isinstance(f, Field) else Field(f) for name, f in fields.items()}

    def check(self, value, where: str) -> None:
        if not isinstance(value, dict):
            raise Mismatch(where, f"expected {'an object' if where else 'a JSON object'}, got {_shown(value)}")
        for name, f in self.fields.items():
            at = f"{where}.{name}" if where else name
            if name in value:
                f.type.check(value[name], at)
            elif not f.optional:
                raise Mismatch(at, "missing field")


def optional(type_, note: str = "") -> Field:
    return Field(type_, note, optional=True)


def format_and_kind(kind: str | None) -> dict:
    """`"format": 1` and, for a file with one, `"kind"`: checked first, so a wrong file is named as such."""
    fields = {"format": Const(1, "unsupported format {got} (this version reads format 1)")}
    if kind:
        fields["kind"] = Const(kind, f"expected kind '{kind}', got {{got}} (wrong file for this flag?)")
    return fields


@dataclass(frozen=True)
class Schema:
    name: str  # the file's `kind` where it has one
    about: str  # the file, and the command that writes it
    body: Object


# -- the file kinds ----------------------------------------------------------------------------------------

ACC = "accuracy, percent (0-100)"
VERSIONS = MappingOf(Nullable(STR), key="library")
VERSIONS_NOTE = "`firefly_core.provenance.library_versions` (null: not installed, in files of earlier versions)"
INTERVAL = ListOf(NUMBER, length=2, doc="[lo, hi]")
MODEL = Object(  # firefly_eval.checkpoints.describe
    ckpt=optional(STR, "the `--ckpt` given; the report's label when none is given"),
    base=Field(STR, "the base model folder"),
    adapter=Field(Nullable(STR), "the LoRA adapter folder; null for a full model"),
    tokenizer=Field(STR, "the tokenizer folder (with bits-per-char `--tokenizer`: the grown tokenizer)"),
    base_model=Field(STR, "the base model as the checkpoint records it"),
    embedding_init=optional(Enum("pieces", "mean", "random"), "bits-per-char `--tokenizer` only: how new rows "
                                                               "were initialised"),
    added_tokens=optional(INT, "bits-per-char `--tokenizer` only: embedding rows added"),
)
DATA = dict(data_dir=optional(STR), data_hash=optional(STR, "sha256 of the data files read"))
PROVENANCE = dict(versions=optional(VERSIONS, VERSIONS_NOTE), wall_time_s=optional(NUMBER))  # every benchmark's

TRAIN_RUN = Schema("train_run", "`run_info.json` of a training run folder, written by `firefly-train pretrain|sft` "
                                "when training starts and again when it ends.", Object(
    **format_and_kind("train_run"),
    command=Enum("pretrain", "sft"),
    base_model=Field(STR, "the model training started from (alias, folder, or the run it continues)"),
    mode=Enum("qlora", "lora", "full"),
    data=Field(ListOf(Object(path=STR, sha256=STR)), "the training files"),
    versions=Field(VERSIONS, VERSIONS_NOTE),
    git_commit=optional(Nullable(STR), "null outside a git checkout"),
    hardware=Object(device=optional(STR, "cpu or cuda"), gpu_name=optional(Nullable(STR)), n_gpus=optional(INT),
                    cpu_count=optional(Nullable(INT)), platform=optional(STR)),
    started_at=optional(STR, "ISO 8601, UTC"),
    finished_at=optional(Nullable(STR), "null while training"),
    steps=Field(INT, "optimizer steps done"),
    tokens=Field(INT, "tokens trained on"),
    train_runtime_s=Field(NUMBER, "training time, checkpoint writing excluded"),
    trainable_params=optional(INT), total_params=optional(INT),
    final_loss=optional(Nullable(LOSS), "null while training"),
    peak_gpu_memory_gib=optional(NUMBER, "on a GPU"),
    dropped_conversations=optional(INT, "sft only: conversations with nothing to train on"),
))
LOSS_LINE = Schema("loss_line", "A line of `loss.jsonl` in a training run folder: one per logged step, appended "
                                "and fsynced.", Object(
    step=INT, loss=LOSS, lr=optional(NUMBER), tokens=optional(INT, "tokens trained on so far"),
    tokens_per_s=optional(NUMBER), elapsed_s=optional(NUMBER, "training time so far"),
    epoch=optional(NUMBER, "epochs done (fractional)"),
))
CHECKPOINT_META = Schema("checkpoint_meta", "`firefly_checkpoint.json` of a checkpoint folder (`checkpoints/step-N/`, "
                                            "`final/`), written last by `firefly-train`.", Object(
    **format_and_kind(None),
    base_model=Field(STR, "the model the adapter applies to"),
    mode=Enum("qlora", "lora", "full"),
    vocab_size=Field(INT, "rows of the trained embedding matrix"),
    step=INT,
    train_embeddings=Field(BOOL, "embed_tokens and lm_head were trained (saved in full)"),
))
VOCAB_STATS = Schema("vocab_stats", "Written by `firefly-train vocab stats --json OUT`; reductions are against the "
                                    "first tokenizer.", Object(
    **format_and_kind("vocab_stats"),
    tokenizers=ListOf(Object(name=STR, path=STR, vocab_size=INT)),
    files=Field(ListOf(Object(path=STR, chars=INT, tokens=MappingOf(INT))), "`tokens`: a count per tokenizer"),
    total=Object(chars=INT, tokens=MappingOf(INT), tokens_per_char=MappingOf(NUMBER),
                 reduction_vs_first=Field(MappingOf(NUMBER), "fraction (0-1)")),
))
VOCAB_MERGE = Schema("vocab_merge", "`merge_info.json` of a tokenizer folder written by `firefly-train vocab merge`; "
                                    "the counts depend on the base tokenizer's kind.", Object(
    **format_and_kind("vocab_merge"),
    base_kind=Enum("sentencepiece", "bytelevel_bpe"),
    base=Field(STR, "the base tokenizer"), added=Field(STR, "the SentencePiece model whose pieces were added"),
    pad_to_multiple_of=Nullable(INT), padding=Field(INT, "padding tokens added"),
    **{k: optional(INT, "with a sentencepiece base")
       for k in ("base_pieces", "added_model_pieces", "appended", "appended_reserved_ascii", "merged_pieces")},
    **{k: optional(INT, "with a bytelevel_bpe base")
       for k in ("base_vocab", "base_merges", "candidates", "added_pieces", "added_intermediates", "skipped_in_base",
                 "skipped_not_one_word", "skipped_base_intermediate", "vocab_size", "new_merges",
                 "pieces_single_token")},
))
VOCAB_TRAIN = Schema("vocab_train", "`train_info.json` beside the SentencePiece model written by `firefly-train "
                                    "vocab train`.", Object(
    **format_and_kind("vocab_train"),
    corpus=ListOf(STR), lines=INT, chars=INT, model_type=Enum("unigram", "bpe"), vocab_size=INT,
    options=Field(Object(), "the SentencePiece trainer options"), train_seconds=NUMBER,
))
CMMLU = Schema("cmmlu", "Written by `firefly-eval cmmlu -o OUT.json`; accuracies are percentages (0-100), "
                        "null where OpenCompass printed none.", Object(
    **format_and_kind("cmmlu"),
    model=MODEL,
    mode=optional(Enum("ppl", "gen")), engine=optional(Enum("firefly", "opencompass")),
    shots=optional(INT),
    subjects=Field(MappingOf(Nullable(NUMBER), key="subject"), ACC),
    categories=Field(MappingOf(Nullable(NUMBER), key="category"), f"{ACC}; the five of "
                                                                   "`firefly_eval.benchmarks.CMMLU_CATEGORIES`"),
    average=Field(NUMBER, ACC),
    n_questions=INT,
    limit=optional(Nullable(INT), "questions per subject; null: all"),
    **DATA, **PROVENANCE,
    opencompass_summary=optional(STR, "OpenCompass's summary CSV"),
))
LEADERBOARD = Schema("leaderboard", "Written by `firefly-eval leaderboard -o OUT.json`; the Open LLM Leaderboard v1 "
                                    "tasks (`firefly_eval.benchmarks.LEADERBOARD`).", Object(
    **format_and_kind("leaderboard"),
    model=MODEL,
    tasks=MappingOf(Object(
        metric=Field(STR, "acc_norm, acc or mc2"), value=Field(NUMBER, ACC),
        stderr=optional(Nullable(NUMBER), "percentage points"), shots=INT,
        n=optional(Nullable(INT), "questions scored"), file=optional(STR, "truthfulqa_mc2: the question file read"),
    ), key="task"),
    average=Field(NUMBER, f"{ACC}, over the tasks"),
    limit=optional(Nullable(INT), "questions per task (per MMLU subject); null: all"),
    engine=optional(Enum("firefly", "hf")),
    **DATA, **PROVENANCE,
))
BITS_PER_CHAR = Schema("bits_per_char", "Written by `firefly-eval bits-per-char -o OUT.json` (definitions: "
                                        "docs/report.md).", Object(
    **format_and_kind("bits_per_char"),
    model=MODEL,
    text=Object(path=STR, sha256=STR, max_chars=optional(Nullable(INT))),
    documents=POSITIVE_INT, chars=POSITIVE_INT, bytes=POSITIVE_INT, tokens=POSITIVE_INT, windows=optional(INT),
    nll_bits=Field(NUMBER, "total negative log-likelihood, bits"),
    bits_per_char=NUMBER, bits_per_byte=NUMBER, bits_per_token=optional(NUMBER), tokens_per_char=NUMBER,
    context=optional(Object(start_token=Enum("bos", "eos"), block_size=INT, stride=INT)),
    device=optional(STR), dtype=optional(STR),
    **PROVENANCE,
))
TALLY = Schema("tally", "Written by `firefly-eval tally --db votes.sqlite -o tally.json`; rates are fractions (0-1).",
               Object(
    **format_and_kind("tally"),
    set_hash=optional(Nullable(STR), "the evaluation set's content hash"),
    models=optional(ListOf(STR)), n_votes=optional(INT), n_annotators=optional(INT),
    bootstrap=optional(Object(n_resamples=INT, seed=INT)),
    pairs=Field(ListOf(Object(
        model_a=STR, model_b=STR,
        win=Field(INT, "of model_a, after the judging rules"), tie=INT, loss=INT, n=Field(INT, "win + tie + loss"),
        n_items=optional(INT),
        win_pct=Field(NUMBER, "percent of n (fractions of n are read too)"), tie_pct=NUMBER, loss_pct=NUMBER,
        win_rate=Field(NUMBER, "(win + tie/2) / n"),
        win_rate_ci=optional(Nullable(INTERVAL), "95%, bootstrap over items"),
        sign_test_p=optional(Nullable(NUMBER), "null: no decisive votes"),
        per_task=optional(Nullable(MappingOf(Object(win=INT, tie=INT, loss=INT), key="task"))),
    )), "one per model pair that has votes"),
    position_bias=optional(Nullable(Object(
        left_wins=INT, right_wins=INT, ties=INT,
        left_win_rate=Nullable(NUMBER), ci=optional(Nullable(INTERVAL)), p=Nullable(NUMBER),
    )), "raw choices, before the rules; rates null when no vote chose a side"),
    agreement=optional(Object(
        cohen_kappa=optional(Nullable(NUMBER)), fleiss_kappa=optional(Nullable(NUMBER)),
        n_items_multi=optional(INT, "(item, pair) units judged more than once"),
        annotators=optional(ListOf(STR)), reason=optional(Nullable(STR), "why a kappa is null"),
    )),
    bradley_terry=optional(Nullable(ListOf(Object(
        model=STR, score=NUMBER, ci=INTERVAL, elo=optional(NUMBER),
    ))), "null with fewer than three models"),
))
ANSWERS_HEADER = Schema("answers_header", "Line 1 of an answers file written by `firefly-eval generate -o "
                                          "answers.jsonl`.", Object(
    **format_and_kind("answers_header"),
    model=Field(STR, "the name tallies show"), ckpt=optional(STR), set=optional(STR, "the evaluation set's path"),
    set_hash=Field(STR, "the evaluation set's content hash"),
    sampling=optional(Object(
        greedy=optional(BOOL), temperature=optional(Nullable(NUMBER)), top_p=optional(Nullable(NUMBER)),
        max_new_tokens=optional(INT), template=optional(STR), system=optional(Nullable(STR)),
    )),
    seed=optional(INT, "the base seed"),
))
ANSWER = Schema("answer", "Every later line of an answers file: one per item, appended and fsynced line by line "
                          "(resumable; a torn last line is cut away on resume).", Object(
    id=Field(STR, "an item id of the set"), answer=STR,
    seed=optional(INT, "the item's seed (from the base seed and the id)"),
    tokens=optional(INT, "new tokens generated (`max_new_tokens`: cut, not finished)"),
))
EVAL_ITEM = Schema("eval_item", "A line of an evaluation set in our format (`eval_sets/*.jsonl`).", Object(
    id=STR, task=STR, prompt=STR, objective=Field(BOOL, "the answer is right or wrong"),
    reference=optional(Nullable(STR)),
    checker=optional(Nullable(Object()), "how an answer is checked (docs/human_eval.md)"),
))

SCHEMAS = {s.name: s for s in (TRAIN_RUN, LOSS_LINE, CHECKPOINT_META, VOCAB_STATS, VOCAB_MERGE, VOCAB_TRAIN, CMMLU,
                               LEADERBOARD, BITS_PER_CHAR, TALLY, ANSWERS_HEADER, ANSWER, EVAL_ITEM)}


# -- checking ----------------------------------------------------------------------------------------------

def validate(name: str, obj, path, line: int | None = None):
    """`obj` as read from `path` (`line` of a JSONL file); raises InputError naming the file, line and field."""
    try:
        SCHEMAS[name].body.check(obj, "")
    except Mismatch as e:
        raise InputError(path, e.message, line=line, field=e.where or None) from None
    return obj


def checked(name: str, obj):
    """`obj`, about to be written; a mismatch is a bug in its writer (ValueError)."""
    try:
        SCHEMAS[name].body.check(obj, "")
    except Mismatch as e:
        raise ValueError(f"writing a '{name}' that does not fit its schema (firefly_core.schemas): {e}") from None
    return obj


# -- docs/CONTRACTS.md ------------------------------------------------------------------------------------

BLOCK = re.compile(r"(<!-- schema: (\w+) -->\n)(.*?)(<!-- end schema -->)", re.DOTALL)


def _rows(where: str, f: Field) -> Iterator[tuple[str, str, str]]:
    yield where, f.type.doc + (", optional" if f.optional else ""), f.note
    inner = f.type
    while isinstance(inner, (Nullable, ListOf, MappingOf)):
        where, inner = where + inner.step, inner.inner
    if isinstance(inner, Object):
        for name, sub in inner.fields.items():
            yield from _rows(f"{where}.{name}", sub)


def contracts_markdown(name: str) -> str:
    """The generated part of CONTRACTS.md for one schema: what the file is, and a table of its fields."""
    s = SCHEMAS[name]
    lines = [s.about, "", "| field | type | meaning |", "|---|---|---|"]
    for field_name, f in s.body.fields.items():
        lines += [f"| `{w}` | {t} | {note} |" if note else f"| `{w}` | {t} | |" for w, t, note in _rows(field_name, f)]
    return "\n".join(lines) + "\n"


def update_contracts(text: str) -> str:
    """`text` with every `<!-- schema: NAME -->` ... `<!-- end schema -->` block regenerated."""
    return BLOCK.sub(lambda m: m.group(1) + contracts_markdown(m.group(2)) + m.group(4), text)


def main(argv: list[str]) -> int:
    """`python -m firefly_core.schemas [CONTRACTS.md]`: rewrite the file's schema blocks, or print them all."""
    if not argv:
        print("\n".join(f"<!-- schema: {n} -->\n{contracts_markdown(n)}<!-- end schema -->" for n in SCHEMAS))
        return 0
    path = Path(argv[0])
    write_text(path, update_contracts(path.read_text(encoding="utf-8")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
