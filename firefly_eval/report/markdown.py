"""Assemble the report's markdown: summary, tables, figures, reproducibility block.

Pure text from validated inputs; a section without input is replaced by a one-line note, never faked.
"""
from __future__ import annotations

import json
from pathlib import Path

from firefly_eval.report import tables
from firefly_eval.report.collect import Inputs
from firefly_eval.report.tables import (
    MISSING,
    Table,
    acc,
    bpc_groups,
    bpc_mean,
    bpc_spread,
    duration,
    interval,
    p_value,
    pct,
    shown_path,
)

PATH_FIELDS = {"base_model", "ckpt", "data_dir", "opencompass_summary", "set"}
CAPTIONS = {
    "bpc": "Bits per character on the held-out text (left, lower is better; a dot per seed) and tokens per "
           "character of each model's tokenizer (right), from the bits-per-char results.",
    "loss": "Training loss per logged step (from each run's loss.jsonl).",
    "benchmarks": "Accuracy (%) per CMMLU category and per leaderboard task, with the average (from the result JSON).",
    "win_tie_loss": "Human evaluation: share of A's wins, ties and losses against B, per pair (from the tally).",
    "per_task": "Human evaluation per task: share of A's wins, ties and losses against B (from the tally).",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_table(t: Table) -> str:
    lines = ["| " + " | ".join(map(_cell, t.headers)) + " |", "|" + "---|" * len(t.headers)]
    lines += ["| " + " | ".join(map(_cell, r)) + " |" for r in t.rows]
    return "\n".join(lines)


def _figure(figures: dict, key: str) -> list[str]:
    if key not in figures:
        return []
    return [f"![{CAPTIONS[key]}]({figures[key]})", "", f"*{CAPTIONS[key]}*", ""]


def _note(text: str) -> list[str]:
    return [f"_Not included: {text}_", ""]


def _smoke_note(results) -> list[str]:
    limited = sorted({r.data["limit"] for r in results if r.data.get("limit") is not None})
    if not limited:
        return []
    return [f"Smoke run: `--limit {', '.join(map(str, limited))}` questions per subject/task on "
            f"{', '.join(sorted({shown_path(r.data.get('data_dir')) for r in results}))}; these numbers are not "
            "comparable to full-set published scores. Each rests on the number of questions shown (n); its 95% "
            "interval (exact binomial for accuracies, ± 1.96 standard errors otherwise) shows how far it could be "
            "from the same model's score on many more questions: differences inside the intervals are noise.", ""]


def _same_file(a, b) -> bool:
    try:
        return Path(shown_path(a)).resolve() == Path(shown_path(b)).resolve()
    except OSError:
        return False


def _tokens_per_char(inp: Inputs) -> str | None:
    """Tokens per character of each tokenizer in the vocab stats: on the bits-per-char text when it was measured
    there, else on all the measured text."""
    stats = inp.vocab_stats
    names = [t["name"] for t in stats["tokenizers"]]
    where, counts, chars = "the measured text", stats["total"]["tokens"], stats["total"]["chars"]
    if inp.bpc:
        row = next((f for f in stats["files"] if _same_file(f["path"], inp.bpc[0].data["text"]["path"])), None)
        if row is not None:
            where, counts, chars = f"`{shown_path(row['path'])}`", row["tokens"], row["chars"]
    if len(names) < 2 or not chars:
        return None
    steps = " -> ".join(f"**{counts[n] / chars:.3f}** (`{n}`)" for n in names)
    fewer = 1 - counts[names[-1]] / counts[names[0]] if counts[names[0]] else 0.0
    return f"Tokens per character on {where}: {steps}, {pct(fewer)} fewer tokens after the vocabulary merge"


def _bpc_headlines(inp: Inputs) -> list[str]:
    groups = bpc_groups(inp.bpc)
    data = inp.bpc[0].data
    text = shown_path(data["text"]["path"])
    trained_on = [r.name for r in inp.runs if any(d["sha256"] == data["text"]["sha256"] for d in r.info["data"])]
    seen = (f"**trained on by {', '.join(trained_on)}: not held out**" if trained_on else
            "in none of the training files given" if inp.runs else "held out")
    values = []
    for label, runs in groups:
        each = ", ".join(f"{r.data['bits_per_char']:.3f}" for r in runs)
        seeds = f" (seeds: {each})" if len(runs) > 1 else ""
        values.append(f"`{label}` **{bpc_mean(runs):.3f}**{seeds}")
    heads = [f"Bits per character on `{text}` ({data['chars']} characters, {seen}; lower is better): "
             + ", ".join(values)]
    steps = list(zip(groups, groups[1:]))
    if len(groups) > 2:
        steps.append((groups[0], groups[-1]))
    for (a_label, a_runs), (b_label, b_runs) in steps:
        heads.append(_bpc_change(a_label, a_runs, b_label, b_runs))
    if reading := _bpc_reading(groups):
        heads.append(reading)
    return heads


def _bpc_reading(groups) -> str | None:
    """When the second model starts behind the first and later ones win part of it back without catching up
    (the main job's expanded vocabulary before and after training), one line that says so, so the base -> end
    change is not read as training making the model worse."""
    if len(groups) < 3:
        return None
    (first, first_runs), (second, second_runs) = groups[:2]
    best, best_runs = min(groups[2:], key=lambda g: bpc_mean(g[1]))
    lost = bpc_mean(second_runs) - bpc_mean(first_runs)
    won = bpc_mean(second_runs) - bpc_mean(best_runs)
    behind = bpc_mean(best_runs) - bpc_mean(first_runs)
    if lost <= 0 or won <= 0 or behind <= 0:
        return None
    return (f"Reading: `{second}` starts {lost:.3f} bits/char behind `{first}`; training won back {won:.3f} of them "
            f"({pct(won / lost)}) by `{best}`, which is still {behind:.3f} behind `{first}`: the training moves the "
            f"model the right way, but this run does not make a model better than `{first}`")


def _bpc_change(a_label: str, a_runs, b_label: str, b_runs) -> str:
    """One headline line: the change in bits per character from model a to model b, against the run-to-run
    noise: the larger spread over seeds of the two (a model given once has no measured spread)."""
    a = bpc_mean(a_runs)
    change = bpc_mean(b_runs) - a
    line = f"`{a_label}` -> `{b_label}`: **{change:+.3f}** bits/char ({100 * change / a:+.1f}%)"
    noise = max(((bpc_spread(runs), len(runs)) for runs in (a_runs, b_runs) if len(runs) > 1), default=None)
    if noise is None:
        return line + "; one run each, so no run-to-run noise is measured for this change"
    spread, n = noise
    verdict = "exceeds" if abs(change) > spread else "does **not** exceed"
    ratio = abs(change) / spread if spread > 0 else 0.0
    times = f", {ratio:.1f}x" if 1 < ratio < 10 else f", {ratio:.0f}x" if ratio >= 10 else ""
    return line + f", which {verdict} the run-to-run noise (spread over {n} seeds: {spread:.3f} bits/char{times})"


def summary(inp: Inputs) -> list[str]:
    out = ["## Summary", ""]
    if inp.runs:
        out.append("**What was trained**")
        out.append("")
        for r in inp.runs:
            i = r.info
            data = ", ".join(f"`{shown_path(d['path'])}` (sha256 {d['sha256'][:12]})" for d in i["data"])
            loss = "" if i.get("final_loss") is None else f", final loss {i['final_loss']:.4f}"
            start = r.config.get("model")
            start = f", continuing `{start}`" if start and start != i["base_model"] else ""
            out.append(f"- `{r.name}`: `firefly-train {i['command']}`, {i['mode']} on `{i['base_model']}`{start}, data {data}; "
                       f"{i['steps']} steps, {i['tokens']} tokens, {duration(i['train_runtime_s'])} wall time{loss}.")
        out.append("")
    heads = _bpc_headlines(inp) if inp.bpc else []
    if inp.vocab_stats and (line := _tokens_per_char(inp)):
        heads.append(line)
    # benchmark numbers are headline numbers only when measured on the full sets, never from a smoke run
    for r in inp.cmmlu:
        if r.data.get("limit") is None:
            heads.append(f"CMMLU average of `{r.label}`: **{acc(r.data['average'])}** ({r.data['n_questions']} questions)")
    for r in inp.leaderboard:
        if r.data.get("limit") is None:
            heads.append(f"Leaderboard average of `{r.label}`: **{acc(r.data['average'])}** ({len(r.data['tasks'])} tasks)")
    if inp.tally:
        for p in inp.tally["pairs"]:
            heads.append(f"`{p['model_a']}` vs `{p['model_b']}`: win rate **{pct(p['win_rate'])}** "
                         f"(95% CI {interval(p['win_rate_ci'])}, sign test p = {p_value(p['sign_test_p'])}, n = {p['n']})")
    if heads:
        out += ["**Headline numbers**", ""] + [f"- {h}." for h in heads] + [""]
    smoke = [r for r in inp.cmmlu + inp.leaderboard if r.data.get("limit") is not None]
    if smoke:
        out += ["The benchmark smoke runs below (`--limit` questions per subject or task) check that the "
                "evaluation pipeline works; a few questions cannot tell two models apart (see their 95% "
                "intervals), so they are not headline numbers.", ""]
    return out


def bpc_section(inp: Inputs, figures: dict) -> list[str]:
    first = inp.bpc[0].data
    ctx = first.get("context") or {}
    out = [f"How well each model predicts `{shown_path(first['text']['path'])}` ({first['documents']} documents, "
           f"{first['chars']} characters, {first['bytes']} UTF-8 bytes): the negative log-likelihood of all its "
           "tokens, in bits, divided by its characters (`firefly-eval bits-per-char`). Dividing by characters, not "
           "tokens, compares models with different tokenizers fairly. Each document is scored from the "
           f"tokenizer's {ctx.get('start_token', 'start').upper()} token, in windows of {ctx.get('block_size', '?')} "
           f"tokens advancing by {ctx.get('stride', '?')}. A model given several times (one result per training "
           "seed) is shown with the mean and the spread of its seeds: the run-to-run noise a change must exceed.",
           "", render_table(tables.bits_per_char(inp.bpc)), "", render_table(tables.bits_per_char_runs(inp.bpc)), ""]
    return out + _figure(figures, "bpc")


def render(inp: Inputs, title: str, figures: dict[str, str], command: str, environment: dict,
           figure_labels: dict[str, str] | None = None) -> str:
    out = [f"# {title}", ""]
    out += summary(inp)
    if figures and figure_labels:
        out += ["No font with Chinese glyphs was found (install one, e.g. Debian's `fonts-wqy-microhei`), so the "
                "figures show Chinese names as numbers: "
                + ", ".join(f"{k} = {v}" for k, v in figure_labels.items()) + ".", ""]

    out += ["## Held-out text: bits per character", ""]
    if inp.bpc:
        out += bpc_section(inp, figures)
    else:
        out += _note("no `--bpc` result was given.")

    out += ["## Training", ""]
    if inp.runs:
        out += [render_table(tables.training(inp.runs)), ""]
        out += _figure(figures, "loss")
    else:
        out += _note("no `--run` training folder was given.")

    out += ["## Tokenizer efficiency", ""]
    if inp.vocab_stats:
        out += [f"From `{inp.vocab_stats_path}` (reduction: fewer tokens than the first tokenizer).", "",
                render_table(tables.tokenizer_efficiency(inp.vocab_stats)), "",
                render_table(tables.tokenizer_files(inp.vocab_stats)), ""]
    else:
        out += _note("no `--vocab-stats` JSON was given.")

    for kind, title in (("cmmlu", "CMMLU"), ("leaderboard", "Open LLM Leaderboard tasks")):
        measured = getattr(inp, kind)
        out += [f"## {title}", ""]
        if measured or any(getattr(r, kind) for r in inp.references):
            out += _smoke_note(measured)
            out += [render_table(getattr(tables, kind)(measured, inp.references)), ""]
        else:
            out += _note(f"no `--{kind}` result was given.")
    if inp.references:
        out += ["Rows marked *external* are reference scores supplied with `--compare`, copied from the "
                "named source, not measured here.", ""]
    out += _figure(figures, "benchmarks")

    out += ["## Human evaluation", ""]
    if inp.answers:
        out += ["Generated answers (`firefly-eval generate`):", "", render_table(tables.answers(inp.answers)), ""]
        caps = sorted({a.header["sampling"]["max_new_tokens"] for a in inp.answers
                       if isinstance(a.header.get("sampling"), dict) and a.header["sampling"].get("max_new_tokens")})
        if caps:
            hit = ", ".join(f"`{a.header['model']}` {a.at_cap} of {a.n}" for a in inp.answers if a.at_cap is not None)
            out += [f"Answers are cut at `max_new_tokens` = {', '.join(map(str, caps))} (as recorded in the answers "
                    f"files); answers that reached the cap (cut, not finished): {hit or MISSING}.", ""]
    if inp.tally and not inp.tally["pairs"]:
        out += _note(f"the tally `{inp.tally_path}` holds no votes yet.")
    elif inp.tally:
        out += ["Win / tie / loss of A against B; win rate = (win + tie/2) / n with its 95% confidence interval; "
                "the sign test ignores ties.", "", render_table(tables.win_tie_loss(inp.tally)), ""]
        out += _figure(figures, "win_tie_loss")
        breakdown = tables.per_task(inp.tally)
        if breakdown.rows:
            out += ["### Per task", "", render_table(breakdown), ""]
            out += _figure(figures, "per_task")
        else:
            out += _note("the tally has no per-task breakdown.")
        for name, table in (("Position bias", tables.position_bias(inp.tally)),
                            ("Annotator agreement", tables.agreement(inp.tally)),
                            ("Bradley-Terry scores", tables.bradley_terry(inp.tally))):
            if table is not None:
                out += [f"### {name}", "", render_table(table), ""]
    else:
        out += _note("no `--tally` JSON was given (no human votes yet).")

    out += reproducibility(inp, command, environment)
    return "\n".join(out).rstrip() + "\n"


def _versions(inp: Inputs, environment: dict) -> dict[str, dict[str, str]]:
    """library -> {version: [sources]} across every input file and the report's own environment."""
    seen: dict[str, dict[str, list[str]]] = {}
    sources = [(f"run {r.name}", r.info.get("versions") or {}) for r in inp.runs]
    sources += [(f"{r.path.name}", r.data.get("versions") or {}) for r in inp.cmmlu + inp.leaderboard + inp.bpc]
    sources += [("report", environment.get("versions") or {})]
    for src, versions in sources:
        for lib, v in versions.items():
            if v is None:
                continue
            seen.setdefault(lib, {}).setdefault(str(v), []).append(src)
    return seen


def _fields(obj: dict, keys: list[str]) -> str:
    return ", ".join(f"{k}: `{shown_path(obj[k]) if k in PATH_FIELDS else obj[k]}`" for k in keys
                     if obj.get(k) is not None)


def reproducibility(inp: Inputs, command: str, environment: dict) -> list[str]:
    out = ["## Reproducibility", "", "This report:", "", "```bash", command, "```", ""]
    out += [f"Report written at git commit `{environment.get('git_commit') or 'unknown (not a git checkout)'}` "
            f"on {environment.get('hardware')}.", ""]
    for r in inp.runs:
        i = r.info
        out += [f"### Training run `{r.name}` (`{r.path}`)", "",
                f"- rerun: `firefly-train {i['command']} --config {r.path}/config.yaml -o {r.path}` "
                "(the resolved config below; an existing folder is resumed, so give another -o for a fresh run)",
                f"- {_fields(i, ['base_model', 'mode', 'started_at', 'finished_at'])}",
                f"- git commit: `{i.get('git_commit') or 'unknown'}`",
                f"- hardware: `{json.dumps(i['hardware'], ensure_ascii=False)}`",
                f"- parameters: {_fields(i, ['trainable_params', 'total_params'])}"]
        if i.get("dropped_conversations") is not None:
            out.append(f"- dropped conversations (longer than the maximum length): {i['dropped_conversations']}")
        out += [f"- data: `{shown_path(d['path'])}` sha256 `{d['sha256']}`" for d in i["data"]]
        out += ["", "Resolved `config.yaml`:", "", "```yaml", r.config_text.rstrip(), "```", ""]
    if inp.bpc:
        out += ["### Bits per character", ""]
        for r in inp.bpc:
            d = r.data
            out.append(f"- `{r.path}` (`firefly-eval bits-per-char`): model `{d['model'].get('ckpt')}`, text "
                       f"`{shown_path(d['text']['path'])}` sha256 `{d['text']['sha256']}`, "
                       f"{_fields(d, ['tokens', 'windows', 'device', 'dtype'])}, context "
                       f"`{json.dumps(d.get('context'))}`")
        out.append("")
    results = [("cmmlu", r) for r in inp.cmmlu] + [("leaderboard", r) for r in inp.leaderboard]
    if results:
        out += ["### Benchmark results", ""]
        for kind, r in results:
            d = r.data
            wall = f", wall time {duration(d['wall_time_s'])}" if isinstance(d.get("wall_time_s"), (int, float)) else ""
            out.append(f"- `{r.path}` (`firefly-eval {kind}`): model `{d['model'].get('ckpt')}`, "
                       f"{_fields(d, ['mode', 'shots', 'limit', 'data_dir', 'data_hash', 'opencompass_summary'])}{wall}")
        out.append("")
    if inp.vocab_stats:
        out += ["### Tokenizers", ""] + [f"- `{t['name']}`: `{shown_path(t.get('path'))}`" for t in inp.vocab_stats["tokenizers"]] + [""]
    if inp.answers or inp.tally:
        out += ["### Human evaluation", ""]
        for a in inp.answers:
            out.append(f"- `{a.path}`: {_fields(a.header, ['model', 'ckpt', 'set', 'set_hash', 'seed'])}")
        if inp.tally:
            out.append(f"- `{inp.tally_path}`: set_hash `{inp.tally.get('set_hash')}`")
        out.append("")
    versions = _versions(inp, environment)
    if versions:
        out += ["### Library versions", "", "| library | version (where recorded) |", "|---|---|"]
        for lib in sorted(versions):
            cells = "; ".join(f"{v} ({', '.join(srcs)})" for v, srcs in versions[lib].items())
            out.append(f"| {lib} | {cells} |")
        out.append("")
    return out
