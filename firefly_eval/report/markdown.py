"""Assemble the report's markdown: summary, tables, figures, reproducibility block.

Pure text from validated inputs; a section without input is replaced by a one-line note, never faked.
"""
from __future__ import annotations

import json

from firefly_eval.report import tables
from firefly_eval.report.collect import Inputs
from firefly_eval.report.tables import Table, acc, duration, interval, p_value, pct, shown_path

PATH_FIELDS = {"base_model", "ckpt", "data_dir", "opencompass_summary", "set"}
CAPTIONS = {
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
            "comparable to full-set published scores.", ""]


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
    heads = []
    for r in inp.cmmlu:
        limit = "" if r.data.get("limit") is None else f", smoke run with --limit {r.data['limit']}"
        heads.append(f"CMMLU average of `{r.label}`: **{acc(r.data['average'])}** "
                     f"({r.data['n_questions']} questions{limit})")
    for r in inp.leaderboard:
        limit = "" if r.data.get("limit") is None else f", smoke run with --limit {r.data['limit']}"
        heads.append(f"Leaderboard average of `{r.label}`: **{acc(r.data['average'])}** ({len(r.data['tasks'])} tasks{limit})")
    if inp.tally:
        for p in inp.tally["pairs"]:
            heads.append(f"`{p['model_a']}` vs `{p['model_b']}`: win rate **{pct(p['win_rate'])}** "
                         f"(95% CI {interval(p['win_rate_ci'])}, sign test p = {p_value(p['sign_test_p'])}, n = {p['n']})")
    if inp.vocab_stats:
        first = inp.vocab_stats["tokenizers"][0]["name"]
        for t in inp.vocab_stats["tokenizers"][1:]:
            heads.append(f"Tokenizer `{t['name']}` uses **{pct(inp.vocab_stats['total']['reduction_vs_first'][t['name']])}** "
                         f"fewer tokens than `{first}` on the measured text")
    if heads:
        out += ["**Headline numbers**", ""] + [f"- {h}." for h in heads] + [""]
    return out


def render(inp: Inputs, title: str, figures: dict[str, str], command: str, environment: dict) -> str:
    out = [f"# {title}", ""]
    out += summary(inp)

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
            out += [f"Answers are cut at `max_new_tokens` = {', '.join(map(str, caps))} (as recorded in the answers "
                    "files); short caps keep a smoke run fast but truncate answers a judge would see.", ""]
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
    sources += [(f"{r.path.name}", r.data.get("versions") or {}) for r in inp.cmmlu + inp.leaderboard]
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
