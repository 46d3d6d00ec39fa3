"""`firefly-eval report` on fixture result files (contract formats): every table cell is read back from the
markdown and checked against the files; figures are valid PNGs whose plotted data are the files' numbers."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image
from scipy import stats

from firefly_core.errors import InputError
from firefly_eval.benchmarks import CMMLU_CATEGORIES, LEADERBOARD_TASKS
from firefly_eval.cli import main
from firefly_eval.report import figures
from firefly_eval.report.cli import build_figures
from firefly_eval.report.collect import collect
from firefly_eval.report.tables import shown_path

FIX = Path(__file__).parent / "fixtures"
RUNS = [FIX / "runs" / "pretrain", FIX / "runs" / "sft"]
MODELS = ["base", "tuned"]
BPC = [("base", "bpc_base.json"), ("pretrained", "bpc_pretrained_seed42.json"), ("pretrained", "bpc_pretrained_seed43.json"),
       ("sft", "bpc_sft_seed42.json"), ("sft", "bpc_sft_seed43.json")]


def load(name):
    return json.loads((FIX / name).read_text(encoding="utf-8"))


def argv(out: Path) -> list[str]:
    a = ["report", "--vocab-stats", str(FIX / "vocab_stats.json"), "--tally", str(FIX / "tally.json"),
         "--compare", str(FIX / "refs.yaml"), "-o", str(out)]
    for r in RUNS:
        a += ["--run", str(r)]
    for label, name in BPC:
        a += ["--bpc", f"{label}={FIX / name}"]
    for m in MODELS:
        a += ["--cmmlu", f"{m}={FIX / f'cmmlu_{m}.json'}", "--leaderboard", f"{m}={FIX / f'leaderboard_{m}.json'}",
              "--answers", str(FIX / f"answers_{m}.jsonl")]
    return a


def parse_tables(md: str) -> dict[str, list[list[dict]]]:
    """heading -> its tables, each a list of {header: cell} rows (cells unescaped)."""
    out: dict[str, list[list[dict]]] = {}
    heading, lines = None, md.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("#"):
            heading = lines[i].lstrip("#").strip()
        if lines[i].startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            split = lambda s: [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", s)[1:-1]]  # noqa: E731
            headers = split(lines[i])
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(dict(zip(headers, split(lines[i]), strict=True)))
                i += 1
            out.setdefault(heading, []).append(rows)
            continue
        i += 1
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "REPORT.md"
    assert main(argv(out)) == 0
    md = out.read_text(encoding="utf-8")
    return out, md, parse_tables(md)


def num(cell: str) -> float:
    return float(cell.rstrip("%"))


def test_training_table_is_run_info(report):
    _, md, t = report
    rows = t["Training"][0]
    assert [r["run"] for r in rows] == ["pretrain", "sft"]
    for row, run in zip(rows, RUNS):
        info = json.loads((run / "run_info.json").read_text())
        assert row["command"] == info["command"] and row["base model"] == info["base_model"]
        assert row["started from"] == yaml.safe_load((run / "config.yaml").read_text())["model"]
        assert row["mode"] == info["mode"] and row["data"] == info["data"][0]["path"]
        assert int(row["steps"]) == info["steps"] and int(row["tokens"]) == info["tokens"]
        m, s = re.fullmatch(r"(\d+)m(\d+)s", row["wall time"]).groups()
        assert int(m) * 60 + int(s) == round(info["train_runtime_s"])
        assert num(row["final loss"]) == info["final_loss"]
        # the reproducibility block carries the config verbatim and the data hash
        assert (run / "config.yaml").read_text().rstrip() in md
        assert info["data"][0]["sha256"] in md and info["git_commit"] in md
    assert "qlora on `smollm2-135m`, continuing `runs/main/pretrain`, data" in md
    assert "![Training loss per logged step" in md and "(REPORT-loss.png)" in md


def interval_of(cell: str) -> tuple[float, float]:
    lo, hi = re.search(r"\[([\d.]+), ([\d.]+)\]", cell).groups()
    return float(lo), float(hi)


def test_cmmlu_table_matches_files_and_marks_external(report):
    _, md, t = report
    rows = t["CMMLU"][0]
    for row, m in zip(rows, MODELS):
        r = load(f"cmmlu_{m}.json")
        assert row["model"] == m
        for c in CMMLU_CATEGORIES:
            assert num(row[c]) == pytest.approx(r["categories"][c], abs=0.005)
        assert num(row["Average"]) == pytest.approx(r["average"], abs=0.005)
        assert int(row["questions"]) == r["n_questions"] and int(row["limit/subject"]) == r["limit"]
        # exact binomial interval of round(average * n) right answers out of n
        ci = stats.binomtest(round(r["average"] * r["n_questions"] / 100), r["n_questions"]).proportion_ci(method="exact")
        assert interval_of(row["95% CI of the average"]) == (pytest.approx(100 * ci.low, abs=0.05),
                                                            pytest.approx(100 * ci.high, abs=0.05))
    refs = yaml.safe_load((FIX / "refs.yaml").read_text())
    ext = rows[2]
    assert ext["model"] == f"{refs[1]['model']} (external: {refs[1]['source']})"
    assert num(ext["STEM"]) == refs[1]["cmmlu"]["STEM"] and num(ext["Average"]) == refs[1]["cmmlu"]["average"]
    assert ext["Other"] == "–" and ext["questions"] == "–" and ext["95% CI of the average"] == "–"
    assert len(rows) == 3  # the leaderboard-only reference adds no CMMLU row
    assert "Smoke run: `--limit 5`" in md


def test_leaderboard_table_matches_files(report):
    _, _, t = report
    rows = t["Open LLM Leaderboard tasks"][0]
    first = load("leaderboard_base.json")["tasks"]
    header = list(rows[0])
    names = ["ARC-Challenge", "HellaSwag", "MMLU", "TruthfulQA"]
    assert header[1:5] == [f"{n} ({first[k]['shots']}-shot, {first[k]['metric']})" for n, k in zip(names, LEADERBOARD_TASKS)]
    for row, m in zip(rows, MODELS):
        r = load(f"leaderboard_{m}.json")
        for h, k in zip(header[1:5], LEADERBOARD_TASKS):
            e = r["tasks"][k]
            value, stderr, n = re.fullmatch(r"([\d.]+) ± ([\d.]+) \(n = (\d+), 95% CI \[.*\]\)", row[h]).groups()
            assert float(value) == pytest.approx(e["value"], abs=0.005)
            assert float(stderr) == pytest.approx(e["stderr"], abs=0.005) and int(n) == e["n"]
            if e["metric"] == "mc2":  # not a share of right answers: value ± 1.96 stderr
                expected = (e["value"] - 1.96 * e["stderr"], e["value"] + 1.96 * e["stderr"])
            else:
                ci = stats.binomtest(round(e["value"] * e["n"] / 100), e["n"]).proportion_ci(method="exact")
                expected = (100 * ci.low, 100 * ci.high)
            assert interval_of(row[h]) == (pytest.approx(expected[0], abs=0.05), pytest.approx(expected[1], abs=0.05))
        assert row["Average"] == f"{r['average']:.2f}"  # 34.305 is printed as float formatting rounds it
        assert int(row["limit/task"]) == r["limit"]
    ref = yaml.safe_load((FIX / "refs.yaml").read_text())[0]
    assert rows[2]["model"] == f"{ref['model']} (external: {ref['source']})"
    assert [num(rows[2][h]) for h in header[1:6]] == [ref["leaderboard"][k] for k in LEADERBOARD_TASKS + ["average"]]


def test_human_eval_tables_match_tally(report):
    _, md, t = report
    tally = load("tally.json")
    wtl, = t["Human evaluation"][1:]  # [0] is the answers table
    for row, p in zip(wtl, tally["pairs"], strict=True):
        assert row["pair (A vs B)"] == f"{p['model_a']} vs {p['model_b']}"
        for k in ("win", "tie", "loss", "n"):
            assert int(row[k]) == p[k]
        for k in ("win", "tie", "loss"):
            assert row[f"{k} %"] == f"{p[f'{k}_pct']:.1f}%"  # the tally writes percentages
        assert num(row["win rate (win + tie/2)"]) == pytest.approx(100 * p["win_rate"], abs=0.05)
        lo, hi = (num(x) for x in row["95% CI"].strip("[]").split(", "))
        assert (lo, hi) == (pytest.approx(100 * p["win_rate_ci"][0], abs=0.05), pytest.approx(100 * p["win_rate_ci"][1], abs=0.05))
        assert float(row["sign test p"]) == pytest.approx(p["sign_test_p"], rel=1e-3)
    per_task = t["Per task"][0]
    expected = [(f"{p['model_a']} vs {p['model_b']}", task, c) for p in tally["pairs"] for task, c in sorted(p["per_task"].items())]
    assert len(per_task) == len(expected) == 4
    for row, (pair, task, c) in zip(per_task, expected):
        assert (row["pair (A vs B)"], row["task"]) == (pair, task)
        assert [int(row[k]) for k in ("win", "tie", "loss")] == [c["win"], c["tie"], c["loss"]]
        n = sum(c.values())
        assert int(row["n"]) == n and num(row["win rate"]) == pytest.approx(100 * (c["win"] + c["tie"] / 2) / n, abs=0.05)
    b = tally["position_bias"]
    pb = t["Position bias"][0][0]
    assert [int(pb[k]) for k in ("left wins", "right wins", "ties")] == [b["left_wins"], b["right_wins"], b["ties"]]
    assert num(pb["left win rate"]) == 100 * b["left_win_rate"] and float(pb["p"]) == b["p"]
    ag = t["Annotator agreement"][0][0]
    assert float(ag["Cohen's kappa"]) == tally["agreement"]["cohen_kappa"] and ag["Fleiss' kappa"] == "–"
    assert int(ag["items judged by several annotators"]) == tally["agreement"]["n_items_multi"]
    bt = t["Bradley-Terry scores"][0]
    assert [(r["model"], float(r["Bradley-Terry score"])) for r in bt] == [(m["model"], m["score"]) for m in tally["bradley_terry"]]
    assert "win rate **62.3%** (95% CI [54.7%, 69.3%], sign test p = 0.0019, n = 130)" in md


def test_answers_table_matches_headers(report):
    _, md, t = report
    answers = [[json.loads(x)["tokens"] for x in (FIX / f"answers_{m}.jsonl").read_text().splitlines()[1:]] for m in MODELS]
    assert (f"Answers are cut at `max_new_tokens` = 64 (as recorded in the answers files); answers that reached the "
            f"cap (cut, not finished): `base` {sum(t >= 64 for t in answers[0])} of {len(answers[0])}, "
            f"`tuned` {sum(t >= 64 for t in answers[1])} of {len(answers[1])}.") in md
    rows = t["Human evaluation"][0]
    for row, m in zip(rows, MODELS, strict=True):
        lines = [json.loads(x) for x in (FIX / f"answers_{m}.jsonl").read_text(encoding="utf-8").splitlines()]
        head, items = lines[0], lines[1:]
        assert row["model"] == head["model"] and row["evaluation set"] == head["set"]
        assert int(row["answers"]) == len(items) and int(row["seed"]) == head["seed"]
        assert row["sampling"] == f"do_sample=False, max_new_tokens={head['sampling']['max_new_tokens']}"
        assert num(row["mean tokens / answer"]) == pytest.approx(sum(i["tokens"] for i in items) / len(items), abs=0.05)


def test_tokenizer_tables_match_vocab_stats(report):
    _, md, t = report
    stats = load("vocab_stats.json")
    eff, files = t["Tokenizer efficiency"]
    for row, tok in zip(eff, stats["tokenizers"], strict=True):
        n = tok["name"]
        assert row["tokenizer"] == n and int(row["vocab size"]) == tok["vocab_size"]
        assert int(row[f"tokens ({stats['total']['chars']} chars)"]) == stats["total"]["tokens"][n]
        assert float(row["tokens / char"]) == pytest.approx(stats["total"]["tokens_per_char"][n], abs=5e-4)
        assert num(row["reduction vs first"]) == pytest.approx(100 * stats["total"]["reduction_vs_first"][n], abs=0.05)
    for row, f in zip(files, stats["files"], strict=True):
        assert row["file"] == f["path"] and int(row["chars"]) == f["chars"]
        assert {k[len("tokens: "):]: int(v) for k, v in row.items() if k.startswith("tokens: ")} == f["tokens"]
        assert [float(row[f"tokens / char: {n}"]) for n in f["tokens"]] == [
            pytest.approx(v / f["chars"], abs=5e-4) for v in f["tokens"].values()]
    # the headline: on the held-out text when the stats measured it (not here), else on all measured text
    assert ("Tokens per character on the measured text: **1.276** (`smollm2-135m`) -> **0.670** (`expanded`), "
            "47.5% fewer tokens after the vocabulary merge.") in md


def test_bits_per_char_is_the_headline_with_its_seed_noise(report):
    _, md, t = report
    results = [(label, load(name)) for label, name in BPC]
    base = results[0][1]["bits_per_char"]
    groups = {}
    for label, r in results:
        groups.setdefault(label, []).append(r["bits_per_char"])
    summary, runs = t["Held-out text: bits per character"]
    assert [r["model"] for r in summary] == ["base", "pretrained", "sft"]
    for row, (label, values) in zip(summary, groups.items()):
        mean = sum(values) / len(values)
        assert int(row["runs (seeds)"]) == len(values) and float(row["bits / char"]) == pytest.approx(mean, abs=5e-4)
        if len(values) > 1:
            assert float(row["spread over seeds (max - min)"]) == pytest.approx(max(values) - min(values), abs=5e-4)
            assert float(row["change vs base"]) == pytest.approx(mean - base, abs=5e-4)
    assert [(r["model"], float(r["bits / char"])) for r in runs] == [
        (label, pytest.approx(r["bits_per_char"], abs=5e-5)) for label, r in results]
    head = md.split("## Held-out text")[0]
    # base 7.506; pretrained 6.927 (spread 0.052): -0.578, 11x the spread; sft 7.024 (spread 0.073): +0.096 from
    # pretrained (against the larger spread of the two), -0.482 from base, 6.6x
    assert "`base` -> `pretrained`: **-0.578** bits/char (-7.7%), which exceeds the run-to-run noise (spread over 2 seeds: 0.052 bits/char, 11x)" in head
    assert "`pretrained` -> `sft`: **+0.096** bits/char (+1.4%), which exceeds the run-to-run noise (spread over 2 seeds: 0.073 bits/char, 1.3x)" in head
    assert "`base` -> `sft`: **-0.482** bits/char (-6.4%), which exceeds the run-to-run noise (spread over 2 seeds: 0.073 bits/char, 6.6x)" in head
    assert "(seeds: 6.901, 6.953)" in head and "1651 characters, in none of the training files given" in head
    assert "Reading:" not in head  # pretrained is already better than base: nothing to explain
    # smoke-run benchmark numbers are in their sections, never in the headline
    assert "CMMLU average" not in head and "Leaderboard average" not in head
    assert "they are not headline numbers" in head
    assert "(REPORT-bpc.png)" in md


def test_figures_are_valid_pngs_referenced_relatively(report):
    out, md, _ = report
    refs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(refs) == ["REPORT-benchmarks.png", "REPORT-bpc.png", "REPORT-loss.png", "REPORT-per_task.png",
                            "REPORT-win_tie_loss.png"]
    for name in refs:
        with Image.open(out.parent / name) as im:
            im.verify()
        with Image.open(out.parent / name) as im:
            assert im.format == "PNG" and 300 <= im.width <= 2500 and 100 <= im.height <= 2000


@pytest.fixture(scope="module")
def built():
    inp = collect(runs=[str(r) for r in RUNS], cmmlu=[f"{m}={FIX / f'cmmlu_{m}.json'}" for m in MODELS],
                  leaderboard=[f"{m}={FIX / f'leaderboard_{m}.json'}" for m in MODELS], tally=FIX / "tally.json",
                  bpc=[f"{label}={FIX / name}" for label, name in BPC])
    return build_figures(inp)


def test_bpc_figure_bars_are_the_means_and_dots_the_seeds(built):
    left, right = built["bpc"].axes
    groups = {}
    for label, name in BPC:
        groups.setdefault(label, []).append(load(name))
    bars, = left.containers
    assert [p.get_height() for p in bars.patches] == pytest.approx(
        [sum(r["bits_per_char"] for r in rs) / len(rs) for rs in groups.values()])
    assert [list(line.get_ydata()) for line in left.lines] == [[r["bits_per_char"] for r in rs] for rs in groups.values()]
    assert [t.get_text() for t in left.get_xticklabels()] == list(groups)
    assert [p.get_height() for p in right.containers[0].patches] == pytest.approx(
        [sum(r["tokens_per_char"] for r in rs) / len(rs) for rs in groups.values()])


def test_loss_figure_plots_loss_jsonl(built):
    axes = built["loss"].axes
    assert len(axes) == 2
    for ax, run in zip(axes, RUNS):
        rows = [json.loads(x) for x in (run / "loss.jsonl").read_text().splitlines()]
        line, = ax.lines
        assert list(line.get_xdata()) == [r["step"] for r in rows]
        assert list(line.get_ydata()) == [r["loss"] for r in rows]
        assert ax.get_ylabel() == "training loss" and run.name in ax.get_title()


def _segments(ax):
    """label -> widths of that label's bars, in row order."""
    return {c.get_label(): [p.get_width() for p in c.patches] for c in ax.containers}


def test_win_tie_loss_figure_is_the_tally(built):
    ax, = built["win_tie_loss"].axes
    pairs = load("tally.json")["pairs"]
    seg = _segments(ax)
    for k in ("win", "tie", "loss"):
        assert seg[k] == pytest.approx([100 * p[k] / p["n"] for p in pairs])
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{p['model_a']} vs {p['model_b']}" for p in pairs]


def test_per_task_figure_is_the_breakdown(built):
    ax, = built["per_task"].axes  # only the first pair has a per-task breakdown
    per_task = load("tally.json")["pairs"][0]["per_task"]
    tasks = sorted(per_task)
    assert [t.get_text() for t in ax.get_yticklabels()] == tasks
    seg = _segments(ax)
    for k in ("win", "tie", "loss"):
        assert seg[k] == pytest.approx([100 * per_task[t][k] / sum(per_task[t].values()) for t in tasks])


def test_benchmark_figure_bars_are_the_scores(built):
    cm_ax, lb_ax = built["benchmarks"].axes
    for ax, kind, get in ((cm_ax, "cmmlu", lambda r: [r["categories"][c] for c in CMMLU_CATEGORIES]),
                          (lb_ax, "leaderboard", lambda r: [r["tasks"][k]["value"] for k in LEADERBOARD_TASKS])):
        for container, m in zip(ax.containers, MODELS, strict=True):
            r = load(f"{kind}_{m}.json")
            assert container.get_label() == m
            assert [p.get_height() for p in container.patches] == get(r) + [r["average"]]


def test_missing_sections_are_noted_not_faked(tmp_path):
    out = tmp_path / "r.md"
    (tmp_path / "r-benchmarks.png").write_bytes(b"stale")  # left by an earlier, fuller report
    assert main(["report", "--run", str(RUNS[0]), "-o", str(out)]) == 0
    md = out.read_text()
    for flag in ("--vocab-stats", "--cmmlu", "--leaderboard", "--tally"):
        assert f"_Not included: no `{flag}`" in md
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["r-loss.png"]
    assert "external" not in md and "Headline" not in md


@pytest.mark.parametrize("mutate, flag, message", [
    (lambda d: d.pop("average"), "--cmmlu", "cmmlu.json: field 'average': missing field"),
    (lambda d: d["categories"].update(STEM="high"), "--cmmlu", "field 'categories.STEM': expected a finite number"),
    (lambda d: d.update(kind="leaderboard"), "--cmmlu", "field 'kind': expected kind 'cmmlu'"),
])
def test_bad_result_file_names_file_and_field(tmp_path, capsys, mutate, flag, message):
    data = load("cmmlu_base.json")
    mutate(data)
    bad = tmp_path / "cmmlu.json"
    bad.write_text(json.dumps(data))
    assert main(["report", flag, str(bad), "-o", str(tmp_path / "r.md")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(bad) in err and message in err
    assert not (tmp_path / "r.md").exists()


def test_bad_loss_line_names_line(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(RUNS[0], run)
    with open(run / "loss.jsonl", "a") as f:
        f.write('{"step": 28, "loss": "nan"}\n')
    with pytest.raises(InputError, match=r"loss.jsonl:7: field 'loss'"):
        collect(runs=[str(run)])


def test_tally_percentages_must_match_counts(tmp_path):
    tally = load("tally.json")
    tally["pairs"][0]["win_pct"] = 90.0
    bad = tmp_path / "tally.json"
    bad.write_text(json.dumps(tally))
    with pytest.raises(InputError, match=r"field 'pairs\[0\]'"):
        collect(tally=bad)


def test_fraction_scaled_tally_reads_the_same(tmp_path):
    tally = load("tally.json")
    for p in tally["pairs"]:
        for k in ("win_pct", "tie_pct", "loss_pct"):
            p[k] /= 100
    path = tmp_path / "tally.json"
    path.write_text(json.dumps(tally))
    from firefly_eval.report.tables import win_tie_loss
    assert win_tie_loss(collect(tally=path).tally).rows == win_tie_loss(collect(tally=FIX / "tally.json").tally).rows


def test_saved_png_is_atomic_and_opens(tmp_path, built):
    figures.save(built["loss"], tmp_path / "loss.png")
    assert [p.name for p in tmp_path.iterdir()] == ["loss.png"]
    with Image.open(tmp_path / "loss.png") as im:
        assert im.format == "PNG"


def test_tally_without_votes_is_noted(tmp_path):
    tally = {"format": 1, "kind": "tally", "set_hash": "90a9", "pairs": [],
             "position_bias": {"left_wins": 0, "right_wins": 0, "ties": 0, "left_win_rate": None, "ci": None, "p": None},
             "agreement": {"cohen_kappa": None, "fleiss_kappa": None, "n_items_multi": 0}, "bradley_terry": None}
    path = tmp_path / "tally.json"
    path.write_text(json.dumps(tally))
    assert main(["report", "--tally", str(path), "-o", str(tmp_path / "r.md")]) == 0
    md = (tmp_path / "r.md").read_text()
    assert f"_Not included: the tally `{path}` holds no votes yet._" in md
    assert "| pair" not in md and not list(tmp_path.glob("*.png"))


def test_paths_under_the_current_folder_are_shown_relative(tmp_path, monkeypatch):
    run = tmp_path / "runs" / "pretrain"
    shutil.copytree(RUNS[0], run)
    info = json.loads((run / "run_info.json").read_text())
    info["data"][0]["path"] = str(tmp_path / "samples" / "pretrain_zh.jsonl")  # as the trainer records it
    (run / "run_info.json").write_text(json.dumps(info))
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--run", str(run), "-o", "REPORT.md"]) == 0
    md = (tmp_path / "REPORT.md").read_text(encoding="utf-8")
    assert parse_tables(md)["Training"][0][0]["data"] == "samples/pretrain_zh.jsonl"
    assert str(tmp_path) not in md.replace(f"{run}", "")  # only the --run argument itself, as given
    assert shown_path("/elsewhere/a.jsonl") == "/elsewhere/a.jsonl" and shown_path("runs/x") == "runs/x"


def test_bpc_of_one_run_has_no_noise_and_a_trained_on_text_is_flagged(tmp_path):
    run = tmp_path / "pretrain"
    shutil.copytree(RUNS[0], run)
    info = json.loads((run / "run_info.json").read_text())
    info["data"][0]["sha256"] = load("bpc_base.json")["text"]["sha256"]  # trained on the "held-out" text
    (run / "run_info.json").write_text(json.dumps(info))
    out = tmp_path / "r.md"
    assert main(["report", "--run", str(run), "--bpc", f"base={FIX / 'bpc_base.json'}",
                 "--bpc", f"sft={FIX / 'bpc_sft_seed42.json'}", "-o", str(out)]) == 0
    md = out.read_text(encoding="utf-8")
    assert "**trained on by pretrain: not held out**" in md
    assert "`base` -> `sft`: **-0.519** bits/char (-6.9%); one run each, so no run-to-run noise is measured" in md


def test_bpc_on_different_texts_is_refused(tmp_path, capsys):
    other = load("bpc_sft_seed42.json")
    other["text"] = {"path": "elsewhere.txt", "sha256": "0" * 64, "max_chars": None}
    path = tmp_path / "other.json"
    path.write_text(json.dumps(other))
    assert main(["report", "--bpc", str(FIX / "bpc_base.json"), "--bpc", f"x={path}", "-o", str(tmp_path / "r.md")]) == 2
    assert "measured on different texts (elsewhere.txt, samples/heldout_zh.txt)" in capsys.readouterr().err


def test_bad_bpc_file_names_file_and_field(tmp_path, capsys):
    data = load("bpc_base.json")
    data["bits_per_char"] = "low"
    bad = tmp_path / "bpc.json"
    bad.write_text(json.dumps(data))
    assert main(["report", "--bpc", str(bad), "-o", str(tmp_path / "r.md")]) == 2
    err = capsys.readouterr().err.strip()
    assert str(bad) in err and "field 'bits_per_char': expected a finite number" in err


def test_chinese_names_are_drawn_with_a_cjk_font_or_numbered(tmp_path, monkeypatch):
    """With a CJK font (Debian's fonts-wqy-microhei in the test setup) Chinese labels are drawn as they are, and
    matplotlib finds a glyph for every character; without one they become [1], [2] and the report lists them."""
    argv = ["report", "--cmmlu", f"基座={FIX / 'cmmlu_base.json'}", "--cmmlu", f"微调={FIX / 'cmmlu_tuned.json'}"]
    font = figures.cjk_font()
    if font is not None:
        from matplotlib.font_manager import FontProperties, findfont
        from matplotlib.ft2font import FT2Font

        assert all(ord(c) in FT2Font(findfont(FontProperties(family=font))).get_charmap() for c in "基座微调")
        assert main(argv + ["-o", str(tmp_path / "cjk.md")]) == 0
        assert "No font with Chinese glyphs" not in (tmp_path / "cjk.md").read_text(encoding="utf-8")
        labels = figures.Labels(font)
        assert labels("基座") == "基座" and not labels.replaced
    monkeypatch.setattr(figures, "cjk_font", lambda: None)
    assert main(argv + ["-o", str(tmp_path / "plain.md")]) == 0
    md = (tmp_path / "plain.md").read_text(encoding="utf-8")
    assert "the figures show Chinese names as numbers: [1] = 基座, [2] = 微调." in md
    labels = figures.Labels(None)
    assert [labels(x) for x in ("base", "基座", "微调", "基座")] == ["base", "[1]", "[2]", "[1]"]


def test_bpc_reading_line_when_training_wins_back_part_of_the_expansion_cost():
    """The main job's pattern (expanded vocabulary worse before training, better after, still behind the base): one
    line says so; no line when the second model is not behind or the others catch up."""
    from types import SimpleNamespace

    from firefly_eval.report.markdown import _bpc_reading

    def groups(*values):
        return [(label, [SimpleNamespace(data={"bits_per_char": v}) for v in vs])
                for label, vs in zip(("base", "expanded", "pretrained", "sft"), values)]

    line = _bpc_reading(groups([7.5056], [11.3754], [9.6888, 9.8500], [9.8468, 9.9050]))
    assert line == ("Reading: `expanded` starts 3.870 bits/char behind `base`; training won back 1.606 of them (41.5%) "
                    "by `pretrained`, which is still 2.264 behind `base`: the training moves the model the right way, "
                    "but this run does not make a model better than `base`")
    assert _bpc_reading(groups([7.5], [7.0], [6.9])) is None  # no cost to win back
    assert _bpc_reading(groups([7.5], [11.0], [7.4])) is None  # caught up
    assert _bpc_reading(groups([7.5], [11.0])) is None
