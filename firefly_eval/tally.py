"""`firefly-eval tally`: win / tie / loss per model pair, with the statistics to defend them.

Each vote's outcome is first passed through the seed's rules (`rules.resolve`: on objective items
correctness decides; on open-ended items the side in the wrong language loses), then counted from the pair's first model's side (pairs are sorted by name, so the
same pair is counted once whichever side each model was shown on). See docs/human_eval.md.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from itertools import combinations

import numpy as np

from firefly_core.errors import FireflyError
from firefly_core.io import write_json
from firefly_core.schemas import checked
from firefly_eval import stats
from firefly_eval.eval_set import load_set
from firefly_eval.rules import resolve
from firefly_eval.votes import read_meta, read_votes

OUTCOMES = ("win", "tie", "loss")
SCORE = {"win": 1.0, "tie": 0.5, "loss": 0.0}


def outcome_for(vote, model: str, objective: bool | None = None) -> str:
    """'win' / 'tie' / 'loss' of `model` in a vote, after the seed's judging rules."""
    if objective is None:  # without the set: the app records correctness only on objective items
        objective = vote.left_correct is not None and vote.right_correct is not None
    side = resolve(objective, vote.choice, vote.left_correct, vote.right_correct, vote.left_wrong_language,
                   vote.right_wrong_language)
    if side == "tie":
        return "tie"
    winner = vote.left_model if side == "left" else vote.right_model
    if model not in (vote.left_model, vote.right_model):
        raise ValueError(f"{model} is not in this vote")
    return "win" if winner == model else "loss"


def _objective_of(vote, objective: dict | None) -> bool | None:
    return None if objective is None else objective.get(vote.item_id, False)


def _pct(k: int, n: int) -> float | None:
    return round(100 * k / n, 2) if n else None


def tally_pair(votes, model_a: str, model_b: str, objective: dict | None, n_resamples: int, seed: int) -> dict:
    counts, per_task = Counter(), defaultdict(Counter)
    by_item = defaultdict(list)
    for v in votes:
        o = outcome_for(v, model_a, _objective_of(v, objective))
        counts[o] += 1
        per_task[v.task][o] += 1
        by_item[v.item_id].append(SCORE[o])
    win, tie, loss = (counts[o] for o in OUTCOMES)
    n = win + tie + loss
    scores = np.array([sum(s) for s in by_item.values()])
    sizes = np.array([len(s) for s in by_item.values()])
    return {"model_a": model_a, "model_b": model_b, "win": win, "tie": tie, "loss": loss, "n": n,
            "n_items": len(by_item), "win_pct": _pct(win, n), "tie_pct": _pct(tie, n), "loss_pct": _pct(loss, n),
            "win_rate": stats.win_rate(win, tie, loss),
            "win_rate_ci": stats.clustered_ratio_ci(scores, sizes, n_resamples, seed),
            "sign_test_p": stats.sign_test(win, loss),
            "per_task": {t: {o: c[o] for o in OUTCOMES} for t, c in sorted(per_task.items())}}


def position_bias(votes) -> dict:
    """How often the annotator's choice fell on the left answer (raw choices, before the rules)."""
    choices = Counter(v.choice for v in votes)
    left, right = choices["left"], choices["right"]
    test = stats.proportion_test(left, left + right)
    return {"left_wins": left, "right_wins": right, "ties": choices["tie"],
            "left_win_rate": test[0] if test else None, "ci": test[1] if test else None, "p": test[2] if test else None}


def agreement(votes, objective: dict | None) -> dict:
    """Cohen's kappa (exactly two annotators share items) and Fleiss' kappa over (item, pair) units that
    several annotators judged; categories are the resolved outcome for the pair's first model."""
    units = defaultdict(dict)
    for v in votes:
        a, _ = v.pair
        units[(v.item_id, v.pair)][v.annotator] = outcome_for(v, a, _objective_of(v, objective))
    multi = {k: r for k, r in units.items() if len(r) >= 2}
    annotators = sorted({name for r in multi.values() for name in r})
    result = {"cohen_kappa": None, "fleiss_kappa": None, "n_items_multi": len(multi), "annotators": annotators,
              "reason": None}
    if not multi:
        result["reason"] = "no item was judged by more than one annotator"
        return result
    counts = [[Counter(r.values())[o] for o in OUTCOMES] for r in multi.values()]
    result["fleiss_kappa"], reason = stats.fleiss_kappa(counts)
    if len(annotators) == 2:
        x, y = annotators
        result["cohen_kappa"], reason = stats.cohen_kappa([r[x] for r in multi.values()], [r[y] for r in multi.values()])
    else:
        reason = reason or f"{len(annotators)} annotators: Cohen's kappa is for two, see Fleiss' kappa"
    result["reason"] = reason
    return result


def bradley_terry(votes, models: list[str], objective: dict | None, n_resamples: int, seed: int) -> list[dict]:
    index = {m: i for i, m in enumerate(models)}
    items = sorted({v.item_id for v in votes})
    row = {item: k for k, item in enumerate(items)}
    item_wins = np.zeros((len(items), len(models), len(models)))
    for v in votes:
        a, b = v.pair
        o = SCORE[outcome_for(v, a, _objective_of(v, objective))]
        item_wins[row[v.item_id], index[a], index[b]] += o
        item_wins[row[v.item_id], index[b], index[a]] += 1 - o
    point, ci = stats.bradley_terry_bootstrap(item_wins, n_resamples=n_resamples, seed=seed)
    ranked = sorted(range(len(models)), key=lambda i: -point[i])
    return [{"model": models[i], "score": float(point[i]), "ci": [float(ci[i, 0]), float(ci[i, 1])],
             "elo": stats.elo(point[i])} for i in ranked]


def tally(votes, set_hash: str | None = None, models: list[str] | None = None, objective: dict | None = None,
          n_resamples: int = 2000, seed: int = 0) -> dict:
    """The tally JSON (docs/CONTRACTS.md "tally") from a list of votes.

    `objective` maps item id -> whether the item is objective (from the evaluation set); without it an
    item counts as objective when the vote records correctness for both sides.
    """
    seen = sorted({m for v in votes for m in (v.left_model, v.right_model)})
    models = list(models or []) + [m for m in seen if m not in (models or [])]
    by_pair = defaultdict(list)
    for v in votes:
        by_pair[v.pair].append(v)
    pairs = [tally_pair(by_pair[p], *p, objective, n_resamples, seed)
             for p in (tuple(sorted(c)) for c in combinations(models, 2)) if p in by_pair]
    voted = [m for m in models if m in seen]
    return {"format": 1, "kind": "tally", "set_hash": set_hash, "models": models, "n_votes": len(votes),
            "n_annotators": len({v.annotator for v in votes}), "bootstrap": {"n_resamples": n_resamples, "seed": seed},
            "pairs": pairs, "position_bias": position_bias(votes), "agreement": agreement(votes, objective),
            "bradley_terry": bradley_terry(votes, voted, objective, n_resamples, seed) if len(voted) >= 3 else None}


def _fmt(x, spec=".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def format_table(result: dict) -> str:
    """The seed's table (win / tie / loss per task) for each pair, then the statistics."""
    out = []
    for p in result["pairs"]:
        out.append(f"{p['model_a']} vs {p['model_b']}: win / tie / loss = {p['win']} / {p['tie']} / {p['loss']}"
                   f" ({_fmt(p['win_pct'], '.1f')}% / {_fmt(p['tie_pct'], '.1f')}% / {_fmt(p['loss_pct'], '.1f')}%)")
        ci = p["win_rate_ci"]
        out.append(f"  win rate {_fmt(p['win_rate'])} (95% CI {_fmt(ci[0]) if ci else 'n/a'}-"
                   f"{_fmt(ci[1]) if ci else 'n/a'}), sign test p = {_fmt(p['sign_test_p'], '.3g')}, "
                   f"{p['n']} votes on {p['n_items']} items")
        width = max([len(t) for t in p["per_task"]] + [4])
        out.append(f"  {'task':<{width}}  win  tie  loss")
        for task, c in p["per_task"].items():
            out.append(f"  {task:<{width}}  {c['win']:3d}  {c['tie']:3d}  {c['loss']:4d}")
    pb = result["position_bias"]
    ci = pb["ci"]
    out.append(f"position bias: left won {pb['left_wins']}, right won {pb['right_wins']}, ties {pb['ties']}; "
               f"left share {_fmt(pb['left_win_rate'])}"
               + (f" (95% CI {ci[0]:.3f}-{ci[1]:.3f}, p = {pb['p']:.3g})" if ci else ""))
    ag = result["agreement"]
    out.append(f"agreement on {ag['n_items_multi']} (item, pair) units judged more than once: Cohen's kappa {_fmt(ag['cohen_kappa'])}, "
               f"Fleiss' kappa {_fmt(ag['fleiss_kappa'])}" + (f" ({ag['reason']})" if ag["reason"] else ""))
    if result["bradley_terry"]:
        out.append("Bradley-Terry (geometric mean 1; Elo scale):")
        for r in result["bradley_terry"]:
            out.append(f"  {r['model']:<24} {r['score']:.3f} (95% CI {r['ci'][0]:.3f}-{r['ci'][1]:.3f})  Elo {r['elo']:.0f}")
    return "\n".join(out)


def add_arguments(parser) -> None:
    parser.add_argument("--db", required=True, help="votes database written by firefly-judge")
    parser.add_argument("--set", dest="set_path",
                        help="the evaluation set (tells which items are objective; checked against the database)")
    parser.add_argument("-o", "--output", help="write the tally JSON here")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the intervals")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")


def run(args) -> int:
    if args.bootstrap < 100:
        raise FireflyError("--bootstrap needs at least 100 resamples")
    meta = read_meta(args.db)
    objective = None
    if args.set_path:
        eval_set = load_set(args.set_path)
        if eval_set.hash != meta["set_hash"]:
            raise FireflyError(f"{args.db} was made for set {meta['set_id']} (set_hash {meta['set_hash'][:12]}), "
                               f"not {eval_set.path} ({eval_set.hash[:12]})")
        objective = {it.id: it.objective for it in eval_set.items}
    votes = read_votes(args.db)
    result = tally(votes, meta["set_hash"], meta["models"], objective, args.bootstrap, args.seed)
    if args.output:  # first: a path that cannot be written is the one line printed
        try:
            write_json(args.output, checked("tally", result))
        except OSError as e:
            raise FireflyError(f"cannot write {args.output}: {e.strerror}") from None
    print(format_table(result) if votes else f"{args.db}: no votes yet")
    if args.output:
        print(f"wrote {args.output}")
    return 0
