"""The benchmark registry: what each automatic benchmark is, in one place.

The runners (`cmmlu.py`, `leaderboard.py`), the result schemas (`firefly_core.schemas`) and the report
(`report/`) all read these definitions; adding a leaderboard task or renaming a display name is one edit here.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LeaderboardTask:
    name: str  # our key, in result files and on the command line
    display: str  # as the report's tables and figures show it
    lm_eval_task: str  # the task name in our rendered lm-eval task folder (firefly_eval/tasks/)
    lm_eval_metric: str  # the metric key lm-eval reports for it
    metric: str  # the metric as the Open LLM Leaderboard names it (TruthfulQA's "acc" of mc2 is "mc2")
    shots: int


# The Open LLM Leaderboard v1 tasks, in the leaderboard's order.
LEADERBOARD = {t.name: t for t in (
    LeaderboardTask("arc_challenge", "ARC-Challenge", "ff_arc_challenge", "acc_norm", "acc_norm", 25),
    LeaderboardTask("hellaswag", "HellaSwag", "ff_hellaswag", "acc_norm", "acc_norm", 10),
    LeaderboardTask("mmlu", "MMLU", "ff_mmlu", "acc", "acc", 5),
    LeaderboardTask("truthfulqa_mc2", "TruthfulQA", "ff_truthfulqa_mc2", "acc", "mc2", 0),
)}
LEADERBOARD_TASKS = list(LEADERBOARD)

# CMMLU (scored as OpenCompass's ppl mode): few-shot examples per question, and the five categories of CMMLU's
# own `categories.py`, each with the summary group name OpenCompass gives it.
CMMLU_SHOTS = 5
CMMLU_GROUPS = {"STEM": "cmmlu-stem", "Humanities": "cmmlu-humanities", "Social Science": "cmmlu-social-science",
                "Other": "cmmlu-other", "China specific": "cmmlu-china-specific"}
CMMLU_CATEGORIES = list(CMMLU_GROUPS)
