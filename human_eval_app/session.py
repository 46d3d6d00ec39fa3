"""The judging logic behind the app, free of any UI: who may judge, what they judge next, what they see.

Each annotator has a queue of (item, model pair) in an order of their own; the side each model is shown
on comes from the vote store (randomised per annotator and item, recorded). What reaches the browser is a
`View`: the prompt, the two answers labelled A and B and an opaque handle (`item_id#pair_index`): never a
model name. A vote names the handle it was cast on, so a re-sent vote lands on the same row.
"""
from __future__ import annotations

import hashlib
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

from firefly_eval import rules
from firefly_eval.tally import format_table, tally
from firefly_eval.eval_set import Answers, EvalSet, Item, load_answers, load_set
from firefly_eval.votes import Vote, VoteStore
from firefly_train.errors import FireflyError
from human_eval_app.render import safe_markdown

CHOICE_OF = {"A": "left", "B": "right", "tie": "tie"}


@dataclass(frozen=True)
class Annotator:
    name: str
    is_admin: bool


@dataclass(frozen=True)
class Task:
    """One (item, pair) for one annotator, with the sides decided. Server side only."""
    item: Item
    pair_index: int
    left_model: str
    right_model: str
    answer_left: str
    answer_right: str

    @property
    def handle(self) -> str:
        return f"{self.item.id}#{self.pair_index}"


@dataclass(frozen=True)
class View:
    """What the browser may see of a task (no model names)."""
    handle: str
    task: str
    prompt: str
    answer_a: str
    answer_b: str
    objective: bool
    reference: str | None
    a_correct: bool | None  # pre-filled verdicts for objective items (the checker, or a wrong-language flag)
    b_correct: bool | None
    a_wrong_language: bool
    b_wrong_language: bool
    done: int
    total: int

    @property
    def progress(self) -> str:
        return f"{self.done} / {self.total}"


class Judging:
    def __init__(self, eval_set: EvalSet, answers: list[Answers], store: VoteStore):
        self.set, self.store = eval_set, store
        self.answers = {a.model: a for a in answers}
        self.pairs = store.pairs
        self._queues: dict[str, list[tuple[str, int]]] = {}

    @classmethod
    def open(cls, set_path, answer_paths, db_path) -> "Judging":
        """Load and check everything first; the database is opened (or created) only when all is well."""
        eval_set = load_set(set_path)
        if len(answer_paths) < 2:
            raise FireflyError("--answers needs at least two answer files (one per model)")
        answers = [load_answers(p, eval_set) for p in answer_paths]
        models = [a.model for a in answers]
        if len(set(models)) != len(models):
            dup = sorted({m for m in models if models.count(m) > 1})
            raise FireflyError(f"two answer files are for the same model {dup}: {[str(p) for p in answer_paths]}")
        if Path(db_path).is_dir():
            raise FireflyError(f"--db {db_path} is a folder, expected a SQLite file")
        store = VoteStore(db_path, eval_set.id, eval_set.hash, models)
        return cls(eval_set, answers, store)

    # who -------------------------------------------------------------------------------------------------
    def sign_in(self, token: str | None) -> Annotator | None:
        found = self.store.annotator_for(token)
        return Annotator(*found) if found else None

    # what next -------------------------------------------------------------------------------------------
    def queue(self, annotator: str) -> list[tuple[str, int]]:
        """Every (item_id, pair_index) for this annotator, items in an order of their own (fixed)."""
        if annotator not in self._queues:
            seed = int.from_bytes(hashlib.sha256(f"{self.set.hash}\0{annotator}".encode()).digest()[:8], "big")
            ids = [it.id for it in self.set.items]
            random.Random(seed).shuffle(ids)
            self._queues[annotator] = [(i, p) for i in ids for p in range(len(self.pairs))]
        return self._queues[annotator]

    def task(self, annotator: str, handle: str) -> Task:
        item_id, _, index = str(handle).rpartition("#")
        if item_id not in self.set.by_id or not index.isdigit() or int(index) >= len(self.pairs):
            raise FireflyError(f"no such item on this server: {handle!r}")
        item, pair_index = self.set.by_id[item_id], int(index)
        pair = self.pairs[pair_index]
        left = self.store.left_model_for(annotator, item_id, pair)
        right = pair[1] if left == pair[0] else pair[0]
        return Task(item, pair_index, left, right, self.answers[left].by_id[item_id],
                    self.answers[right].by_id[item_id])

    def _done(self, annotator: str) -> set[tuple[str, int]]:
        index = {p: k for k, p in enumerate(self.pairs)}
        return {(i, index[p]) for i, p in self.store.done_of(annotator) if p in index}

    def progress(self, annotator: str) -> tuple[int, int]:
        queue = self.queue(annotator)
        done = self._done(annotator)
        return sum(q in done for q in queue), len(queue)

    def next_task(self, annotator: str) -> Task | None:
        """The first item not yet judged and not skipped; skipped ones come back at the end; None when done."""
        done = self._done(annotator)
        index = {p: k for k, p in enumerate(self.pairs)}
        skipped = {(i, index[p]) for i, p in self.store.skipped_of(annotator) if p in index}
        todo = [q for q in self.queue(annotator) if q not in done]
        if not todo:
            return None
        item_id, pair_index = next((q for q in todo if q not in skipped), todo[0])
        return self.task(annotator, f"{item_id}#{pair_index}")

    def view(self, annotator: str, task: Task) -> View:
        item = task.item
        flags = [rules.wrong_language(item.prompt, a) for a in (task.answer_left, task.answer_right)]
        verdicts = [None, None]
        if item.objective:
            verdicts = [False if wrong else rules.auto_correct(item, answer)
                        for wrong, answer in zip(flags, (task.answer_left, task.answer_right))]
        done, total = self.progress(annotator)
        return View(task.handle, item.task, item.prompt, task.answer_left, task.answer_right, item.objective,
                    item.reference, verdicts[0], verdicts[1], flags[0], flags[1], done, total)

    # votes -----------------------------------------------------------------------------------------------
    def vote(self, annotator: str, handle: str, choice: str, a_correct: bool | None = None,
             b_correct: bool | None = None, comment: str = "") -> Vote:
        """Record `annotator`'s vote ("A", "B" or "tie") on the task `handle`; committed when this returns."""
        if choice not in CHOICE_OF:
            raise FireflyError(f"choice must be one of {sorted(CHOICE_OF)}, got {choice!r}")
        task = self.task(annotator, handle)
        if task.item.objective:
            if a_correct is None or b_correct is None:
                raise FireflyError("objective item: mark whether A and B are correct first")
            flags = (bool(a_correct), bool(b_correct))
        else:
            flags = (None, None)
        vote = Vote(annotator, task.item.id, task.item.task, task.left_model, task.right_model, CHOICE_OF[choice],
                    flags[0], flags[1], (comment or "").strip()[:2000], time.time())
        self.store.record_vote(vote)
        return vote

    def skip(self, annotator: str, handle: str) -> None:
        task = self.task(annotator, handle)
        self.store.skip(annotator, task.item.id, self.pairs[task.pair_index])

    def outcome_text(self, vote: Vote) -> str:
        """How a vote counts (the seed's rules), told without naming the models."""
        item = self.set.by_id[vote.item_id]
        final = rules.resolve(item.objective, vote.choice, vote.left_correct, vote.right_correct)
        label = {"left": "A wins", "right": "B wins", "tie": "tie"}[final]
        if item.objective and final != vote.choice:
            return f"counted as {label} (objective item: correctness decides)"
        return f"counted as {label}"

    # results (admin) -------------------------------------------------------------------------------------
    def results_markdown(self, n_resamples: int = 1000) -> str:
        """The live tally for the admin view (`firefly_eval.tally`, the same numbers as `firefly-eval tally`)
        and each annotator's progress."""
        votes = self.store.all_votes()
        head = f"**{len(votes)} votes** on set {_cell(self.set.id)} ({len(self.set.items)} items)"
        if votes:
            objective = {it.id: it.objective for it in self.set.items}
            table = format_table(tally(votes, self.set.hash, self.store.models, objective, n_resamples))
            fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", table)), default=0))
            head += f"\n\n{fence}text\n{table}\n{fence}"
        total = len(self.pairs) * len(self.set.items)
        per = {name: 0 for name in self.store.annotators()}
        for v in votes:
            per[v.annotator] = per.get(v.annotator, 0) + 1
        rows = [f"| {_cell(name)} | {n} / {total} |" for name, n in per.items()]
        return "\n".join([head, "", "| annotator | votes |", "|---|---:|", *rows])


def _cell(text: str) -> str:
    return safe_markdown(text).replace("|", "\\|").replace("\n", " ")
