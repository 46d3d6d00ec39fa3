"""FireflyPPLInferencer writes the same predictions file as OpenCompass's PPLInferencer, byte for byte, with the same
model (also when prompts exceed max_seq_len and few-shot examples are dropped)."""
import json
from pathlib import Path

import pytest

from firefly_eval import cmmlu

MINI = Path(__file__).resolve().parents[2] / "firefly_eval" / "minisets" / "cmmlu"


@pytest.mark.parametrize("max_seq_len", [None, 300])
def test_same_predictions_file_as_opencompass(tiny_llama, tmp_path, max_seq_len):
    from opencompass.openicl.icl_inferencer import PPLInferencer
    from opencompass.registry import ICL_PROMPT_TEMPLATES, ICL_RETRIEVERS
    from opencompass.utils import build_dataset_from_cfg

    from firefly_eval.opencompass_model import FireflyCausalLM
    from firefly_eval.ppl_inferencer import FireflyPPLInferencer

    model = FireflyCausalLM(str(tiny_llama), prefix_cache=True)
    files = {}
    for subject in ("chinese_history", "economics"):
        cfg = cmmlu.dataset_configs(MINI, [subject], "ppl", None)[0]
        dataset = build_dataset_from_cfg(cfg)
        infer = cfg["infer_cfg"]
        templates = {k: ICL_PROMPT_TEMPLATES.build(infer[k]) for k in ("ice_template", "prompt_template") if k in infer}
        for cls in (PPLInferencer, FireflyPPLInferencer):
            retriever = ICL_RETRIEVERS.build({**infer["retriever"], "dataset": dataset})
            inferencer = cls(model=model, batch_size=3, max_seq_len=max_seq_len)
            inferencer.inference(retriever, **templates, output_json_filepath=str(tmp_path / cls.__name__),
                                 output_json_filename=f"{subject}.json")
            files[cls.__name__, subject] = (tmp_path / cls.__name__ / f"{subject}.json").read_bytes()
        assert files["FireflyPPLInferencer", subject] == files["PPLInferencer", subject]
    saved = json.loads(files["PPLInferencer", "economics"])
    shots = {item["label: A"]["prompt"].count("题目") - 1 for item in saved.values()}  # few-shot examples kept
    assert shots == ({5} if max_seq_len is None else {1})  # 300 tokens: OpenCompass drops 4 of the 5


def _rendering_equals_opencompass(data_dir: Path, subjects: list[str]) -> int:
    from opencompass.registry import ICL_PROMPT_TEMPLATES, ICL_RETRIEVERS
    from opencompass.utils import build_dataset_from_cfg

    from firefly_eval.ppl_inferencer import LabelPrompts, _label_template

    checked = 0
    for cfg in cmmlu.dataset_configs(data_dir, subjects, "ppl", None):
        infer = cfg["infer_cfg"]
        templates = {k: ICL_PROMPT_TEMPLATES.build(infer[k]) for k in ("ice_template", "prompt_template") if k in infer}
        retriever = ICL_RETRIEVERS.build({**infer["retriever"], "dataset": build_dataset_from_cfg(cfg)})
        template = _label_template(templates.get("ice_template"), templates.get("prompt_template"))
        fast = LabelPrompts(template)
        ice = retriever.generate_ice(retriever.retrieve()[0], ice_template=templates.get("ice_template"))
        for row in retriever.test_ds.to_list():
            for label in "ABCD":
                assert fast(row, ice, label) == template.generate_label_prompt_item(row, ice, label, False)
                checked += 1
    return checked


def test_label_prompts_equal_opencompass_rendering_on_the_miniset():
    assert _rendering_equals_opencompass(MINI, ["chinese_history", "economics", "nutrition"]) > 50


def test_label_prompts_fall_back_where_a_field_could_change_the_text():
    from opencompass.openicl import PromptTemplate

    from firefly_eval.ppl_inferencer import LabelPrompts

    template = PromptTemplate({lab: f"</E>Q: {{question}}\nA: {lab}" for lab in "AB"}, ice_token="</E>")
    fast = LabelPrompts(template)
    for row, ice in (({"question": "1+1?"}, "Q: what is {question}?\nA: B\n"),  # the block holds a field
                     ({"question": "</E> 1+1?"}, "Q: 2+2?\nA: A\n"),  # a value holds the few-shot token
                     ({"question": "1+1?"}, "Q: 2+2?\nA: A\n")):
        assert fast(row, ice, "A") == template.generate_label_prompt_item(row, ice, "A", False)
    assert fast({"question": "x"}, "Q: {question}\n", "B") == "Q: x\nQ: x\nA: B"  # OpenCompass fills the block too


@pytest.mark.shared_data
def test_label_prompts_equal_opencompass_rendering_on_real_cmmlu(shared_data):
    subjects = sorted(p.stem for p in (shared_data / "cmmlu" / "test").glob("*.csv"))[::6]  # 12 of the 67
    assert _rendering_equals_opencompass(shared_data / "cmmlu", subjects) > 4000


def test_fill_equals_opencompass_format_then_replace():
    """`fill` gives what OpenCompass's `PromptList.format(**row).replace(token, ice)` gives, for string and message
    items, a string or a message list as the few-shot block, and (through OpenCompass's own code) messages with
    nested values; a message list inside a message is refused as OpenCompass refuses it."""
    from opencompass.utils.prompt import PromptList

    from firefly_eval.ppl_inferencer import fill

    row = {"question": "1+1={x}?", "A": "2", "answer": "A"}
    templates = [
        PromptList(["</E>", "题目：{question}\nA. {A}\n答案是: {answer}"]),
        PromptList([{"section": "round", "pos": "begin"}, "</E>",
                    {"role": "HUMAN", "prompt": "</E>{question} A. {A}"}, {"role": "BOT", "prompt": "{answer}"},
                    {"section": "round", "pos": "end"}]),
        PromptList(["a</E>b</E>", {"role": "HUMAN", "prompt": "{question}", "meta": {"tags": ["x"]}}]),
    ]
    ices = ["例：1+2=3 答案是: A\n\n", PromptList([{"role": "HUMAN", "prompt": "例"}, "答案是: B\n"])]
    for template in templates:
        for ice in ices:
            try:
                expected = template.format(**row).replace("</E>", ice)
            except TypeError:
                with pytest.raises(TypeError):
                    fill(template, row, "</E>", ice)
                continue
            got = fill(template, row, "</E>", ice)
            assert got == expected and isinstance(got, PromptList)
            assert template == PromptList(template)  # the template itself is not changed
    original = templates[1][2]
    fill(templates[1], row, "</E>", ices[0])[2]["prompt"] = "changed"
    assert original == {"role": "HUMAN", "prompt": "</E>{question} A. {A}"}  # messages are copies
