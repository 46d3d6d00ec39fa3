"""The judging logic behind the app, free of any UI: who may judge, what they judge next, what they see.

Each annotator has a queue of (item, model pair) in an order of their own; the side each model is shown
on comes from the vote store (randomised per annotator and item, recorded). What reaches the browser is a
`View`: the prompt, the two answers labelled A and B and an opaque handle (`item_id#pair_index`): never a
model name. A vote names the handle it was cast on, so a re-sent vote lands on the same row, and voting
again on an item (going back to the last vote) replaces the earlier vote.
"""
from __future__ import annotations

import hashlib
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

from firefly_core.errors import FireflyError
from firefly_eval import rules
from firefly_eval.answers import Answers, load_answers
from firefly_eval.eval_set import EvalSet, Item, load_set
from firefly_eval.tally import format_table, tally
from firefly_eval.votes import Vote, VoteStore
from human_eval_app.render import safe_markdown

CHOICE_OF = {"A": "left", "B": "right", "tie": "tie"}
BUTTON_OF = {v: k for k, v in CHOICE_OF.items()}


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
    a_correct: bool | None  # pre-filled verdicts for objective items (the checker, a wrong language, a vote)
    b_correct: bool | None
    a_script: str | None  # the script an answer is mainly in when that is not Chinese (rules.foreign_script)
    b_script: str | None
    language_rule: bool  # open-ended item whose answers must be in Chinese: each side's flag is asked for
    a_wrong_language: bool | None  # pre-filled flags of open-ended items (the detector, or the vote)
    b_wrong_language: bool | None
    done: int
    total: int
    comment: str = ""  # when changing a vote: what was recorded
    voted: str | None = None  # when changing a vote: "A", "B" or "tie"

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

    def _todo(self, annotator: str) -> tuple[list[tuple[str, int]], set[tuple[str, int]]]:
        """(items not yet judged in queue order, those of them put aside with Skip)."""
        done = self._done(annotator)
        index = {p: k for k, p in enumerate(self.pairs)}
        skipped = {(i, index[p]) for i, p in self.store.skipped_of(annotator) if p in index}
        todo = [q for q in self.queue(annotator) if q not in done]
        return todo, skipped & set(todo)

    def next_task(self, annotator: str) -> Task | None:
        """The first item neither judged nor skipped; None when there is none (all done, or only skipped
        items left: see `skipped_left` and `revisit_skipped`)."""
        todo, skipped = self._todo(annotator)
        item_id, pair_index = next((q for q in todo if q not in skipped), (None, None))
        return None if item_id is None else self.task(annotator, f"{item_id}#{pair_index}")

    def skipped_left(self, annotator: str) -> int:
        """How many items not yet judged were skipped."""
        return len(self._todo(annotator)[1])

    def revisit_skipped(self, annotator: str) -> None:
        """Ask the skipped items again (in the annotator's order)."""
        self.store.unskip_all(annotator)

    def last_vote(self, annotator: str) -> tuple[Task, Vote] | None:
        """The annotator's latest vote and its task, to go back and change it; None before any vote."""
        votes = self.store.votes_of(annotator)
        index = {p: k for k, p in enumerate(self.pairs)}
        votes = [v for v in votes if v.item_id in self.set.by_id and v.pair in index]
        if not votes:
            return None
        vote = votes[-1]
        return self.task(annotator, f"{vote.item_id}#{index[vote.pair]}"), vote

    def view(self, annotator: str, task: Task, vote: Vote | None = None) -> View:
        """What the annotator is shown; with `vote` (going back), pre-filled with what they recorded."""
        item = task.item
        answers = (task.answer_left, task.answer_right)
        scripts = [rules.foreign_script(item.prompt, a) for a in answers]
        language_rule = not item.objective and rules.language_rule_applies(item.prompt)
        verdicts, languages = [None, None], [None, None]
        if item.objective:
            verdicts = [False if script else rules.auto_correct(item, answer)
                        for script, answer in zip(scripts, answers)]
        elif language_rule:
            languages = [script is not None for script in scripts]
        if vote is not None:
            verdicts = [vote.left_correct, vote.right_correct] if item.objective else verdicts
            if language_rule and vote.left_wrong_language is not None:
                languages = [bool(vote.left_wrong_language), bool(vote.right_wrong_language)]
        done, total = self.progress(annotator)
        return View(task.handle, item.task, item.prompt, task.answer_left, task.answer_right, item.objective,
                    item.reference, verdicts[0], verdicts[1], scripts[0], scripts[1], language_rule,
                    languages[0], languages[1], done, total, comment=vote.comment if vote else "",
                    voted=BUTTON_OF[vote.choice] if vote else None)

    # votes -----------------------------------------------------------------------------------------------
    def vote(self, annotator: str, handle: str, choice: str, a_correct: bool | None = None,
             b_correct: bool | None = None, comment: str = "", a_wrong_language: bool | None = None,
             b_wrong_language: bool | None = None) -> Vote:
        """Record `annotator`'s vote ("A", "B" or "tie") on the task `handle`; committed when this returns.

        Objective items need both verdicts. On open-ended items with a Chinese prompt each side's
        wrong-language flag is recorded: the annotator's, or the detector's where none is given.
        """
        if choice not in CHOICE_OF:
            raise FireflyError(f"choice must be one of {sorted(CHOICE_OF)}, got {choice!r}")
        task = self.task(annotator, handle)
        flags, languages = (None, None), (None, None)
        if task.item.objective:
            if a_correct is None or b_correct is None:
                raise FireflyError("objective item: mark whether A and B are correct first")
            flags = (bool(a_correct), bool(b_correct))
        elif rules.language_rule_applies(task.item.prompt):
            languages = tuple(rules.wrong_language(task.item.prompt, answer) if given is None else bool(given)
                              for given, answer in ((a_wrong_language, task.answer_left),
                                                    (b_wrong_language, task.answer_right)))
        vote = Vote(annotator, task.item.id, task.item.task, task.left_model, task.right_model, CHOICE_OF[choice],
                    flags[0], flags[1], (comment or "").strip()[:2000], time.time(), languages[0], languages[1])
        self.store.record_vote(vote)
        return vote

    def skip(self, annotator: str, handle: str) -> bool:
        """Put the task aside (it is asked again once the rest is done). An item already voted on (the
        annotator went back to it) keeps its vote and is not skipped: returns False then."""
        task = self.task(annotator, handle)
        pair = self.pairs[task.pair_index]
        if (task.item.id, pair) in self.store.done_of(annotator):
            return False
        self.store.skip(annotator, task.item.id, pair)
        return True

    def outcome_text(self, vote: Vote) -> str:
        """How a vote counts (the seed's rules), told without naming the models."""
        item = self.set.by_id[vote.item_id]
        final = rules.resolve(item.objective, vote.choice, vote.left_correct, vote.right_correct,
                              vote.left_wrong_language, vote.right_wrong_language)
        label = {"left": "A wins", "right": "B wins", "tie": "tie"}[final]
        if final == vote.choice:
            return f"counted as {label}"
        if item.objective:
            return f"counted as {label} (objective item: correctness decides)"
        wrong = "A" if vote.left_wrong_language else "B"
        return f"counted as {label} ({wrong} is not in Chinese: the wrong-language side loses)"

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
