"""`firefly-eval`: parse, dispatch, nothing else."""
import sys

from firefly_core.cli import main_for

COMMANDS = {
    "cmmlu": ("firefly_eval.cmmlu", "CMMLU 5-shot through OpenCompass"),
    "leaderboard": ("firefly_eval.leaderboard", "Open LLM Leaderboard v1 tasks through lm-evaluation-harness"),
    "bits-per-char": ("firefly_eval.bits_per_char", "bits per character (and byte) of a model on a text file"),
    "generate": ("firefly_eval.generate", "answer an evaluation set with a model (resumable)"),
    "validate-set": ("firefly_eval.eval_set", "check an evaluation set (counts per task, ids, fields)"),
    "tally": ("firefly_eval.tally", "win/tie/loss with confidence intervals, agreement and position bias"),
    "report": ("firefly_eval.report.cli", "write a markdown report with figures from result files"),
}


def main(argv=None) -> int:
    return main_for("firefly-eval", __doc__, COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
