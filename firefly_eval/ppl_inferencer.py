"""OpenCompass's PPL inferencer with its per-question bookkeeping done once: the same prompts, the same scores,
the same predictions file, in less time.

OpenCompass's `PPLInferencer` rebuilds a subject's few-shot block for every question (the retriever's fixed
examples give the same text each time), fetches the question's row from the Arrow dataset once per label,
tokenises each of the four prompts alone to check its length, parses every prompt twice, and fills each
prompt's fields into the whole text, few-shot block included (copying every few-shot message). This subclass
renders the few-shot block once per distinct example list, reads each row once, fills a question's fields into
the short template before the few-shot block goes in (`LabelPrompts`; where that could change the text, it
renders as OpenCompass does), tokenises a label's prompts in one batched call (the model keeps the ids for
scoring: `FireflyCausalLM.remember_token_ids`), parses each prompt once (and scores the parsed texts), and
fills message lists without OpenCompass's deep copy of every message (`fill`). The output handler gets exactly
what OpenCompass gives it (including its use of the batch's first few-shot block when it strips the few-shot
text from a saved prompt), so the predictions files are identical byte for byte.

Only the plain PPL path is taken here (no `normalizing_str`); anything else goes to OpenCompass's own code.
"""
from __future__ import annotations

import os

import torch
from opencompass.openicl.icl_inferencer import PPLInferencer
from opencompass.openicl.icl_inferencer.icl_base_inferencer import PPLInferencerOutputHandler
from opencompass.registry import ICL_INFERENCERS
from opencompass.utils.prompt import PromptList, safe_format
from tqdm import trange

_SCALARS = (str, int, float, bool, type(None))


def _label_template(ice_template, prompt_template):
    """The template that renders a labelled prompt, as the retriever's `generate_label_prompt` picks it."""
    if prompt_template is not None:
        if ice_template is not None and prompt_template.ice_token is None:
            raise NotImplementedError("ice_token of prompt_template is not provided")
        return prompt_template
    if ice_template is not None and ice_template.ice_token is not None:
        return ice_template
    raise NotImplementedError("ice_token of ice_template is not provided" if ice_template is not None
                              else "Leaving prompt as empty is not supported")


def _text(prompt) -> str:
    """All the text of a prompt (a string, or a PromptList of strings and messages)."""
    if isinstance(prompt, str):
        return prompt
    return "".join(p if isinstance(p, str) else str(p.get("prompt", "")) for p in prompt)


def fill(template: PromptList, row: dict, ice_token: str, ice) -> PromptList:
    """`template.format(**row).replace(ice_token, ice)` as OpenCompass's `PromptList` computes it, without its deep
    copy of every message: for messages whose values are all strings or numbers a shallow copy is the same."""
    if not all(isinstance(v, _SCALARS) for item in template if isinstance(item, dict) for v in item.values()):
        return template.format(**row).replace(ice_token, ice)
    formatted = [(dict(item, prompt=safe_format(item["prompt"], **row)) if "prompt" in item else dict(item))
                 if isinstance(item, dict) else safe_format(item, **row) for item in template]
    out = PromptList()
    for item in formatted:
        if isinstance(item, dict):
            if "prompt" in item and ice_token in item["prompt"]:
                if not isinstance(ice, str):  # OpenCompass refuses a message list inside a message
                    return PromptList(formatted).replace(ice_token, ice)
                item["prompt"] = item["prompt"].replace(ice_token, ice)
            out.append(item)
        elif isinstance(ice, str):
            out.append(item.replace(ice_token, ice))
        else:  # a message list goes in between the pieces, as OpenCompass splices it
            pieces = item.split(ice_token)
            for i, piece in enumerate(pieces):
                if piece:
                    out.append(piece)
                if i < len(pieces) - 1:
                    out += ice
    return out


class LabelPrompts:
    """`template.generate_label_prompt_item(row, ice, label)`, faster: OpenCompass inserts the few-shot block and
    then fills the row's `{field}`s into the whole text; filling the short template first and inserting the block
    after gives the same prompt whenever the block holds no `{field}` of the row and no field value holds the
    few-shot token. Those two conditions are checked for every prompt; where either fails, OpenCompass renders."""

    def __init__(self, template):
        self.template = template
        self.encoded = {}  # label -> the label's template, separator removed, few-shot token still in
        self.ice_fields = {}  # (id of a few-shot block, row's field names) -> does the block hold a {field}?

    def __call__(self, row: dict, ice, label):
        t = self.template
        key = (id(ice), tuple(row))
        if key not in self.ice_fields:
            text = _text(ice)
            self.ice_fields[key] = any(f"{{{k}}}" in text for k in row)
        if t.ice_token is None or self.ice_fields[key] or any(t.ice_token in str(v) for v in row.values()):
            return t.generate_label_prompt_item(row, ice, label, False)
        if label not in self.encoded:
            raw = t.template if isinstance(t.template, str) or t.prompt_type == "meta" else t.template[label]
            encoded = t._encode_template(raw, ice=False)
            self.encoded[label] = encoded.replace(t.sep_token, "") if t.sep_token is not None else encoded
        encoded = self.encoded[label]
        if isinstance(encoded, str):
            return safe_format(encoded, **row).replace(t.ice_token, ice)
        return fill(encoded, row, t.ice_token, ice)


@ICL_INFERENCERS.register_module()
class FireflyPPLInferencer(PPLInferencer):
    def inference(self, retriever, ice_template=None, prompt_template=None, output_json_filepath=None,
                  output_json_filename=None, normalizing_str=None):
        if normalizing_str is not None or not hasattr(self.model, "remember_token_ids"):
            return super().inference(retriever, ice_template, prompt_template, output_json_filepath,
                                     output_json_filename, normalizing_str)
        output_json_filepath = output_json_filepath or self.output_json_filepath
        output_json_filename = output_json_filename or self.output_json_filename
        handler = PPLInferencerOutputHandler()
        ice_idx_list = retriever.retrieve()
        labels = self.labels if self.labels is not None else retriever.get_labels(
            ice_template=ice_template, prompt_template=prompt_template)
        rendered: dict[tuple, str] = {}

        def few_shot(idx_list) -> str:
            key = tuple(idx_list)
            if key not in rendered:
                rendered[key] = retriever.generate_ice(idx_list, ice_template=ice_template)
            return rendered[key]

        ice = [few_shot(idx_list) for idx_list in ice_idx_list]
        parsed_ice = {key: self.model.parse_template(text, mode="ppl") for key, text in rendered.items()}
        handler.save_ice([parsed_ice[tuple(idx_list)] for idx_list in ice_idx_list])
        template = _label_template(ice_template, prompt_template)
        label_prompt = LabelPrompts(template)
        rows = retriever.test_ds.to_list()

        ppl = []
        for label in labels:
            prompts = [label_prompt(rows[i], ice[i], label) for i in range(len(rows))]
            texts = self.model.parse_template(prompts, mode="ppl")
            token_num_list = self.model.remember_token_ids(texts)
            for i, n in enumerate(token_num_list):
                if self.max_seq_len is None or n <= self.max_seq_len:
                    continue
                while ice_idx_list[i] and n > self.max_seq_len:  # OpenCompass drops examples until it fits
                    ice_idx_list[i] = ice_idx_list[i][:-1]
                    ice[i] = retriever.generate_ice(ice_idx_list[i], ice_template=ice_template)
                    prompts[i] = template.generate_label_prompt_item(rows[i], ice[i], label, False)
                    n = self.model.get_token_len_from_template(prompts[i], mode="ppl")
                texts[i], token_num_list[i] = self.model.parse_template(prompts[i], mode="ppl"), n
            sub_ppl_list = []
            for start in trange(0, len(prompts), self.batch_size, disable=not self.is_main_process):
                with torch.no_grad():  # get_ppl_from_template would parse the prompts again
                    scores = self.model.get_ppl(texts[start:start + self.batch_size]).tolist()
                ice_str = self.model.parse_template(ice[start], mode="ppl")  # as OpenCompass: the batch's first
                for index, (res, prompt) in enumerate(zip(scores, texts[start:start + self.batch_size]), start):
                    sub_ppl_list.append(res)
                    prompt_wo_ice = prompt.replace(ice_str, "")
                    handler.save_prompt_and_ppl(label, prompt_wo_ice, prompt, res, index)
                    handler.results_dict[str(index)][f"label: {label}"]["BPB"] = \
                        res * token_num_list[index] / len(prompt_wo_ice.encode())
            ppl.append(sub_ppl_list)

        handler.save_predictions([labels[scores.index(min(scores))] for scores in zip(*ppl)])
        reader = retriever.dataset_reader
        if reader.output_column:
            handler.save_golds(reader.dataset["test"][reader.output_column])
        if self.is_main_process:
            os.makedirs(output_json_filepath, exist_ok=True)
            handler.write_to_json(output_json_filepath, output_json_filename)
        return [sample["prediction"] for sample in handler.results_dict.values()]
