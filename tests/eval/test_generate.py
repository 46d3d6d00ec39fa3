import json
from pathlib import Path

from firefly_eval.cli import main
from firefly_eval.eval_set import load_answers, load_set
from firefly_eval.generate import default_model_name, item_seed

TINY = Path(__file__).parent / "fixtures" / "tiny_set.jsonl"


def lines(path):
    return [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines()]


def gen(tiny_llama, out, *extra, set_path=TINY):
    return main(["generate", "--ckpt", str(tiny_llama), "--set", str(set_path), "-o", str(out),
                 "--max-new-tokens", "6", "--model-name", "tiny", *extra])


def test_item_seed_depends_on_base_and_id_only():
    assert item_seed(42, "math-01") == item_seed(42, "math-01")
    assert len({item_seed(42, f"x-{i}") for i in range(100)} | {item_seed(43, "x-0")}) == 101
    assert 0 <= item_seed(7, "a") < 2**31


def test_default_model_name(tmp_path):
    assert default_model_name("smollm2-135m") == "smollm2-135m"
    (tmp_path / "run1" / "checkpoints" / "step-000050").mkdir(parents=True)
    (tmp_path / "run1" / "final").mkdir()
    assert default_model_name(str(tmp_path / "run1")) == "run1"
    assert default_model_name(str(tmp_path / "run1" / "final")) == "run1-final"
    assert default_model_name(str(tmp_path / "run1" / "checkpoints" / "step-000050")) == "run1-step-000050"


def test_generate_resume_and_torn_line(tiny_llama, tmp_path):
    out = tmp_path / "answers.jsonl"
    assert gen(tiny_llama, out, "--limit", "3", "--batch-size", "2") == 0
    first = lines(out)
    header = first[0]
    assert header["kind"] == "answers_header" and header["model"] == "tiny"
    assert header["set_hash"] == load_set(TINY).hash and header["seed"] == 42
    assert header["sampling"] == {"greedy": False, "temperature": 0.35, "top_p": 0.9, "max_new_tokens": 6,
                                  "template": "auto", "system": None}
    assert sorted(r["id"] for r in first[1:]) == ["classification-01", "math-01", "math-02"]
    for r in first[1:]:
        assert r["seed"] == item_seed(42, r["id"]) and 1 <= r["tokens"] <= 6 and isinstance(r["answer"], str)
    # a kill mid-write leaves a torn last line: resuming cuts it away and answers the rest, once each
    with open(out, "a", encoding="utf-8") as f:
        f.write('{"id": "classification-02", "ans')
    assert gen(tiny_llama, out, "--batch-size", "2") == 0
    second = lines(out)
    assert second[:4] == first  # answered items untouched
    assert sorted(r["id"] for r in second[1:]) == sorted(load_set(TINY).by_id)
    answers = load_answers(out, load_set(TINY))
    assert answers.model == "tiny" and len(answers.by_id) == 6
    # nothing left: a rerun appends nothing
    assert gen(tiny_llama, out) == 0
    assert lines(out) == second


def test_resume_refuses_other_set_or_settings(tiny_llama, tmp_path, capsys):
    out = tmp_path / "answers.jsonl"
    assert gen(tiny_llama, out, "--limit", "1") == 0
    other = tmp_path / "other.jsonl"
    objs = lines(TINY)
    objs[0]["prompt"] = "另一个问题"
    other.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs), encoding="utf-8")
    before = out.read_bytes()
    assert gen(tiny_llama, out, set_path=other) == 2
    assert "answers a different evaluation set" in capsys.readouterr().err
    assert gen(tiny_llama, out, "--temperature", "0.7") == 2
    assert "was made with sampling=" in capsys.readouterr().err
    assert out.read_bytes() == before  # nothing lost


def test_answers_do_not_depend_on_batch(tiny_llama, tmp_path):
    one, three = tmp_path / "one.jsonl", tmp_path / "three.jsonl"
    assert gen(tiny_llama, one, "--limit", "3", "--batch-size", "1") == 0
    assert gen(tiny_llama, three, "--limit", "3", "--batch-size", "3") == 0
    by_id = lambda p: {r["id"]: (r["answer"], r["tokens"]) for r in lines(p)[1:]}  # noqa: E731
    assert by_id(one) == by_id(three)
    other_seed = tmp_path / "seed.jsonl"
    assert gen(tiny_llama, other_seed, "--limit", "3", "--seed", "7") == 0
    assert by_id(other_seed) != by_id(one)


def test_greedy_and_named_template(tiny_llama, tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert gen(tiny_llama, a, "--limit", "2", "--greedy", "--template", "chatml") == 0
    assert gen(tiny_llama, b, "--limit", "2", "--greedy", "--template", "chatml", "--seed", "1") == 0
    assert [r["answer"] for r in lines(a)[1:]] == [r["answer"] for r in lines(b)[1:]]
    assert lines(a)[0]["sampling"]["greedy"] is True and lines(a)[0]["sampling"]["temperature"] is None


def test_bad_flags(tiny_llama, tmp_path, capsys):
    assert gen(tiny_llama, tmp_path / "x.jsonl", "--top-p", "0") == 2
    assert "sampling needs" in capsys.readouterr().err


def test_embedded_model_answers_the_set(tmp_path):
    out = tmp_path / "smol.jsonl"
    assert main(["generate", "--ckpt", "smollm2-135m", "--set", str(TINY), "-o", str(out),
                 "--max-new-tokens", "48", "--batch-size", "6"]) == 0
    answers = load_answers(out, load_set(TINY))
    assert answers.model == "smollm2-135m" and all(answers.by_id.values())
    assert all(1 <= r["tokens"] <= 48 for r in lines(out)[1:])


def test_lora_checkpoint_run_folder(tiny_llama, tmp_path):
    """A firefly-train run folder (LoRA adapter in final/) answers through checkpoints.load."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    final = tmp_path / "run7" / "final"
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama), LoraConfig(r=4, target_modules=["q_proj"]))
    model.save_pretrained(final)
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    tok.save_pretrained(final)
    (final / "firefly_checkpoint.json").write_text(json.dumps(
        {"format": 1, "base_model": str(tiny_llama), "mode": "lora", "vocab_size": len(tok), "step": 1,
         "train_embeddings": False}), encoding="utf-8")
    out = tmp_path / "lora.jsonl"
    assert main(["generate", "--ckpt", str(tmp_path / "run7"), "--set", str(TINY), "-o", str(out),
                 "--max-new-tokens", "4", "--limit", "2"]) == 0
    header, *rows = lines(out)
    assert header["model"] == "run7" and header["ckpt"] == str(tmp_path / "run7") and len(rows) == 2
