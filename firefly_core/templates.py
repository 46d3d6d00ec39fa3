"""Chat templates: how a conversation becomes one token sequence, and which tokens carry the loss.

A conversation is rendered to text together with the character spans of what the model must learn
(each assistant reply plus its end-of-turn marker); the text is tokenized once and a token is trained
when it overlaps one of those spans. So `input_ids` are exactly what the tokenizer gives for the
rendered text (for "auto", exactly `apply_chat_template`'s ids) and the labels are -100 everywhere
else: system prompt, user turns, role headers and separators.

Registered formats follow the models' published chat formats (and yangjianxin1/Firefly's registry);
`{bos}` / `{eos}` stand for the tokenizer's own BOS/EOS tokens, so every template works with any
tokenizer, and no special token needs to be added (text markers such as `<|im_start|>` are single
tokens when the tokenizer has them, plain text otherwise).

"auto" uses the tokenizer's own Jinja `chat_template` (falling back to "firefly" when it has none).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from firefly_core.errors import FireflyError

IGNORE_INDEX = -100


@dataclass(frozen=True)
class ChatTemplate:
    """One chat format. `{content}` is replaced by the message text.

    Per turn the text is `user` (untrained, ends with the assistant header), then `assistant` and
    `eot` (trained: the reply and its end-of-turn marker), then `sep` (untrained).
    """

    name: str
    user: str = ""
    assistant: str = "{content}"
    eot: str = ""
    sep: str = ""
    system: str | None = None  # None: the format has no system prompt
    system_in_first_user: bool = False  # Llama 2: the system block opens the first user message
    default_system: str | None = None  # used when a conversation has no system prompt
    prefix: str = ""  # once, at the very start
    jinja: str | None = None  # "auto": the tokenizer's own chat template


_CHATML = dict(
    system="<|im_start|>system\n{content}<|im_end|>\n",
    user="<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n",
    eot="<|im_end|>",
    sep="\n",
)
_INTERNLM2_SYSTEM = (
    "You are an AI assistant whose name is InternLM (书生·浦语).\n"
    "- InternLM (书生·浦语) is a conversational language model that is developed by Shanghai AI Laboratory "
    "(上海人工智能实验室). It is designed to be helpful, honest, and harmless.\n"
    "- InternLM (书生·浦语) can understand and communicate fluently in the language chosen by the user such "
    "as English and 中文."
)

TEMPLATES: dict[str, ChatTemplate] = {
    # Firefly's own format: <s>{human}</s>{assistant}</s>{human}</s>{assistant}</s>...
    "firefly": ChatTemplate("firefly", prefix="{bos}", system="{content}{eos}", user="{content}{eos}",
                            eot="{eos}"),
    # Meta's Llama 2 chat: <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {answer} </s><s>[INST] ...
    "llama2": ChatTemplate("llama2", system="<<SYS>>\n{content}\n<</SYS>>\n\n", system_in_first_user=True,
                           user="{bos}[INST] {content} [/INST]", assistant=" {content} ", eot="{eos}"),
    # Qwen (1/1.5/2/2.5) chat: ChatML with Qwen's default system prompt.
    "qwen": ChatTemplate("qwen", default_system="You are a helpful assistant.", **_CHATML),
    # Baichuan 2 chat: <reserved_106> (user_token_id 195) / <reserved_107> (assistant_token_id 196).
    "baichuan2": ChatTemplate("baichuan2", system="{content}", user="<reserved_106>{content}<reserved_107>",
                              eot="{eos}"),
    # InternLM2 chat: BOS, then ChatML with InternLM's meta instruction as the default system prompt.
    "internlm2": ChatTemplate("internlm2", prefix="{bos}", default_system=_INTERNLM2_SYSTEM, **_CHATML),
    # Falcon chat (180B-chat / 40B-instruct): "System: ...\nUser: ...\nFalcon: ...", EOS ends a reply.
    "falcon": ChatTemplate("falcon", system="System: {content}\n", user="User: {content}\nFalcon:",
                           assistant=" {content}", eot="{eos}", sep="\n"),
}
TEMPLATES["chatml"] = replace(TEMPLATES["qwen"], name="chatml", default_system=None)


def known_names() -> list[str]:
    return sorted(TEMPLATES) + ["auto"]


def get_template(name: str, tokenizer) -> ChatTemplate:
    """The named template bound to `tokenizer` ({bos}/{eos} resolved); "auto" = the tokenizer's own."""
    if name == "auto":
        if getattr(tokenizer, "chat_template", None):
            return ChatTemplate("auto", jinja=tokenizer.chat_template)
        name = "firefly"
    if name not in TEMPLATES:
        raise FireflyError(f"unknown chat template '{name}' (known: {', '.join(known_names())})")
    template = TEMPLATES[name]
    fields = ("prefix", "system", "user", "assistant", "eot", "sep")
    uses = "".join(getattr(template, f) or "" for f in fields)
    tokens = {}
    for marker, attr in (("{bos}", "bos_token"), ("{eos}", "eos_token")):
        if marker in uses:
            tokens[marker] = getattr(tokenizer, attr, None) or ""
            if marker == "{eos}" and not tokens[marker]:
                raise FireflyError(f"chat template '{name}' ends replies with EOS, but the tokenizer has no eos_token")

    def bind(text):
        if text is None:
            return None
        for marker, token in tokens.items():
            text = text.replace(marker, token)
        return text

    return replace(template, **{f: bind(getattr(template, f)) for f in fields})


def render_conversation(template: ChatTemplate, tokenizer, system: str | None,
                        turns: list[tuple[str, str | None]]) -> tuple[str, list[tuple[int, int]]]:
    """(text, trained character spans). A last turn whose reply is None renders a generation prompt."""
    if template.jinja is not None:
        return _render_jinja(tokenizer, system, turns)
    if system is None:
        system = template.default_system
    parts: list[str] = [template.prefix]
    spans: list[tuple[int, int]] = []
    pending_system = ""
    if system is not None and template.system is not None:
        block = template.system.replace("{content}", system)
        if template.system_in_first_user:
            pending_system = block
        else:
            parts.append(block)
    for user, reply in turns:
        parts.append(template.user.replace("{content}", pending_system + user))
        pending_system = ""
        if reply is None:
            break
        start = sum(map(len, parts))
        parts.append(template.assistant.replace("{content}", reply) + template.eot)
        spans.append((start, start + len(parts[-1])))
        parts.append(template.sep)
    return "".join(parts), spans


def _special_strings(tokenizer) -> list[str]:
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    names = {t.content for t in added.values() if getattr(t, "special", False)}
    names.update(t for t in (tokenizer.eos_token, getattr(tokenizer, "eot_token", None)) if t)
    return sorted(names, key=len, reverse=True)


def _render_jinja(tokenizer, system, turns) -> tuple[str, list[tuple[int, int]]]:
    """Render with the tokenizer's template; locate each reply in order and extend it over the special
    token that immediately follows it (the end-of-turn marker)."""
    messages = [{"role": "system", "content": system}] if system is not None else []
    for user, reply in turns:
        messages.append({"role": "user", "content": user})
        if reply is not None:
            messages.append({"role": "assistant", "content": reply})
    generation = bool(turns) and turns[-1][1] is None
    from jinja2 import TemplateError

    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
    except TemplateError as e:
        raise FireflyError(f"the tokenizer's chat template rejects this conversation ({e}); "
                           "choose a named --template") from None
    specials = _special_strings(tokenizer)
    spans, pos = [], 0
    if system is not None and system.strip():
        pos = max(text.find(system.strip()), 0) + len(system.strip())
    for user, reply in turns:
        found = text.find(user.strip(), pos)
        if found < 0:
            raise FireflyError("the tokenizer's chat template changes the user text; choose a named --template")
        pos = found + len(user.strip())
        if reply is None:
            break
        start = text.find(reply.strip(), pos)
        if start < 0 or not reply.strip():
            raise FireflyError("cannot locate an assistant reply in the tokenizer's chat template output "
                               "(empty reply, or the template rewrites it); choose a named --template")
        end = start + len(reply.strip())
        marker = next((s for s in specials if text.startswith(s, end)), "")
        spans.append((start, end + len(marker)))
        pos = end + len(marker)
    return text, spans


def _labels_from_offsets(ids: list[int], offsets, spans) -> list[int]:
    labels = [IGNORE_INDEX] * len(ids)
    k = 0
    for i, (a, b) in enumerate(offsets):
        while k < len(spans) and spans[k][1] <= a:
            k += 1
        if k < len(spans) and max(b, a + 1) > spans[k][0]:  # overlaps span k (which ends after a)
            labels[i] = ids[i]
    return labels


def encode_conversation(template: ChatTemplate, tokenizer, system: str | None,
                        turns: list[tuple[str, str | None]]) -> tuple[list[int], list[int]]:
    """input_ids and labels (-100 except on assistant replies and their end-of-turn marker).

    With a fast tokenizer the whole text is tokenized at once (character offsets give the labels);
    a slow tokenizer encodes the trained and untrained pieces one by one.
    """
    text, spans = render_conversation(template, tokenizer, system, turns)
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        return ids, _labels_from_offsets(ids, enc["offset_mapping"], spans)
    ids, labels, pos = [], [], 0
    for start, end in spans + [(len(text), len(text))]:
        for piece, trained in ((text[pos:start], False), (text[start:end], True)):
            if piece:
                piece_ids = tokenizer.encode(piece, add_special_tokens=False)
                ids += piece_ids
                labels += piece_ids if trained else [IGNORE_INDEX] * len(piece_ids)
        pos = end
    return ids, labels
