import re

import pytest

from firefly_core.errors import FireflyError
from firefly_core.models import load_for_inference, resolve_checkpoint, resolve_model


def test_embedded_alias_converts_to_hf_folder_and_generates(smollm2):
    assert (smollm2 / "config.json").is_file()
    assert resolve_model("smollm2-135m") == smollm2  # cached: second resolve reuses the folder
    model, tok, ck = load_for_inference("smollm2-135m", device="cpu")
    assert ck.adapter is None
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0][ids["input_ids"].shape[1]:])


def test_model_not_on_disk_is_a_clear_error(tmp_path):
    with pytest.raises(FireflyError, match="not on disk"):
        resolve_model("no-such-org/no-such-model")
    with pytest.raises(FireflyError, match="no config.json"):
        resolve_model(tmp_path)


def test_hf_folder_resolves_to_itself(tiny_llama):
    assert resolve_model(tiny_llama) == tiny_llama
    assert resolve_checkpoint(tiny_llama).adapter is None


@pytest.mark.shared_data
def test_a_lossy_tokenizer_conversion_is_reported(shared_data, caplog):
    from firefly_core.models import load_tokenizer

    load_tokenizer(shared_data / "tokenizers" / "llama2")  # converts exactly: nothing to say
    assert "probe texts" not in caplog.text
    load_tokenizer(shared_data / "tokenizers" / "chinese-llama2")
    assert re.search(r"segments [1-5] of 5 probe texts differently from sentencepiece", caplog.text)
