"""Multi-turn SFT data: read conversations, encode them with a chat template, truncate turn-aware.

Accepted JSONL lines (files, or folders of `.jsonl`):
  * Firefly: `{"conversation": [{"human": ..., "assistant": ...}, ...], "system": ...?}`
  * messages: `{"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}`
    (an optional leading system message, then user/assistant alternating, ending with assistant).

With packing, `pack_rows` groups the encoded conversations into rows of up to max_seq_length tokens.
"""
from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from firefly_core.errors import InputError
from firefly_core.io import file_sha256, iter_jsonl, require
from firefly_core.templates import IGNORE_INDEX, ChatTemplate, encode_conversation
from firefly_train.data import expand_paths
from firefly_train.data.collate import concatenate


@dataclass
class Conversation:
    system: str | None
    turns: list[tuple[str, str]]  # (user, assistant)
    path: Path
    line: int


def _firefly_turns(obj: dict, path: Path, line: int) -> list[tuple[str, str]]:
    conv = require(obj, "conversation", list, path, line)
    turns = []
    for i, turn in enumerate(conv):
        if not isinstance(turn, dict):
            raise InputError(path, f"expected an object, got {type(turn).__name__}", line=line,
                             field=f"conversation[{i}]")
        texts = []
        for key in ("human", "assistant"):
            if key not in turn:
                raise InputError(path, "missing field", line=line, field=f"conversation[{i}].{key}")
            if not isinstance(turn[key], str):
                raise InputError(path, f"expected str, got {type(turn[key]).__name__}", line=line,
                                 field=f"conversation[{i}].{key}")
            texts.append(turn[key])
        turns.append((texts[0], texts[1]))
    return turns


def _messages_turns(obj: dict, path: Path, line: int) -> tuple[str | None, list[tuple[str, str]]]:
    messages = require(obj, "messages", list, path, line)
    system, turns, user = None, [], None
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise InputError(path, f"expected an object, got {type(msg).__name__}", line=line, field=where)
        for key in ("role", "content"):
            if key not in msg:
                raise InputError(path, "missing field", line=line, field=f"{where}.{key}")
        role, content = msg["role"], msg["content"]
        if not isinstance(content, str):
            raise InputError(path, f"expected str, got {type(content).__name__}", line=line, field=f"{where}.content")
        expected = "user" if user is None else "assistant"
        if role == "system" and i == 0:
            system = content
        elif role == expected:
            if user is None:
                user = content
            else:
                turns.append((user, content))
                user = None
        else:
            allowed = f"'{expected}'" + (" or 'system'" if i == 0 else "")
            raise InputError(path, f"role '{role}' out of order (expected {allowed})", line=line,
                             field=f"{where}.role")
    if user is not None:
        raise InputError(path, "conversation ends with a user message (no assistant reply to train on)",
                         line=line, field=f"messages[{len(messages) - 1}]")
    return system, turns


def _read_conversation(obj: dict, path: Path, line: int) -> Conversation:
    if "conversation" in obj:
        turns = _firefly_turns(obj, path, line)
        system = obj.get("system")
        if system is not None and not isinstance(system, str):
            raise InputError(path, f"expected str, got {type(system).__name__}", line=line, field="system")
    elif "messages" in obj:
        system, turns = _messages_turns(obj, path, line)
    else:
        raise InputError(path, "missing field (a line needs 'conversation' or 'messages')", line=line,
                         field="conversation")
    if not turns:
        raise InputError(path, "empty conversation", line=line, field="conversation" if "conversation" in obj
                         else "messages")
    for i, (_, reply) in enumerate(turns):
        if not reply.strip():
            raise InputError(path, f"empty assistant reply in turn {i + 1}", line=line,
                             field=f"conversation[{i}].assistant" if "conversation" in obj else "messages")
    return Conversation(system=system, turns=turns, path=path, line=line)


def load_conversations(paths: list[str]) -> Iterator[Conversation]:
    """Every conversation of every JSONL file (folders are searched for `*.jsonl`), in order."""
    for path in expand_paths(paths, (".jsonl",), "conversation"):
        for line, obj in iter_jsonl(path):
            yield _read_conversation(obj, path, line)


def _trained_runs(labels: list[int]) -> list[tuple[int, int]]:
    """(start, end) of each contiguous run of trained tokens: one per assistant reply."""
    runs, start = [], None
    for i, label in enumerate(labels + [IGNORE_INDEX]):
        if label != IGNORE_INDEX and start is None:
            start = i
        elif label == IGNORE_INDEX and start is not None:
            runs.append((start, i))
            start = None
    return runs


def truncate_turns(input_ids: list[int], labels: list[int], max_len: int) -> tuple[list[int], list[int]]:
    """Keep the whole leading turns that fit; cut the first turn that does not inside its reply, only if
    at least one reply token fits, never leaving a user turn without its reply. May return empty lists."""
    if len(input_ids) <= max_len:
        return input_ids, labels
    cut = 0
    for start, end in _trained_runs(labels):
        if end <= max_len:
            cut = end
        else:
            if start < max_len:
                cut = max_len
            break
    return input_ids[:cut], labels[:cut]


def build_sft_dataset(paths: list[str], tokenizer, template: ChatTemplate,
                      max_seq_length: int) -> tuple[list[dict], dict]:
    """Encoded conversations `{"input_ids", "labels"}` (lists of ints) and statistics."""
    files = expand_paths(paths, (".jsonl",), "conversation")
    items: list[dict] = []
    stats = {"conversations": 0, "kept": 0, "dropped_no_trainable": 0, "truncated": 0, "tokens": 0,
             "trainable_tokens": 0, "files": [{"path": str(p), "sha256": file_sha256(p)} for p in files]}
    for conv in tqdm(load_conversations([str(p) for p in files]), desc="encode conversations", unit=" conv"):
        stats["conversations"] += 1
        ids, labels = encode_conversation(template, tokenizer, conv.system, conv.turns)
        kept_ids, kept_labels = truncate_turns(ids, labels, max_seq_length)
        trainable = sum(label != IGNORE_INDEX for label in kept_labels)
        if trainable == 0:
            stats["dropped_no_trainable"] += 1
            continue
        items.append({"input_ids": kept_ids, "labels": kept_labels})
        stats["kept"] += 1
        stats["truncated"] += len(kept_ids) < len(ids)
        stats["tokens"] += len(kept_ids)
        stats["trainable_tokens"] += trainable
    where = ", ".join(map(str, files))
    if stats["conversations"] == 0:
        raise InputError(where, "no conversations (the files are empty)")
    if not items:
        raise InputError(where, f"all {stats['conversations']} conversations were dropped: none has an assistant "
                                f"token within max_seq_length={max_seq_length}")
    return items, stats


def _bins_by_length(lengths: list[int], max_len: int) -> list[list[int]]:
    """Indices of `lengths` grouped into bins of total at most max_len, best-fit decreasing: longest first (ties by
    index), each into the open bin it leaves least room in (ties: the bin that last reached that room), else a new
    bin. Open bins are kept by remaining room: one sorted list of distinct rooms (at most max_len of them) found
    with bisect, so a million lengths take seconds."""
    bins: list[list[int]] = []
    rooms: list[int] = []  # sorted distinct remaining rooms of open bins
    bins_with_room: dict[int, list[int]] = {}
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        k = bisect_left(rooms, lengths[i])
        if k == len(rooms):
            b, room = len(bins), max_len
            bins.append([])
        else:
            room = rooms[k]
            b = bins_with_room[room].pop()
            if not bins_with_room[room]:
                del bins_with_room[room], rooms[k]
        bins[b].append(i)
        left = room - lengths[i]
        if left:
            if left not in bins_with_room:
                insort(rooms, left)
                bins_with_room[left] = []
            bins_with_room[left].append(b)
    return bins


def pack_rows(items: list[dict], max_len: int) -> list[dict]:
    """Encoded conversations grouped into rows of at most max_len tokens (best-fit decreasing on length), so a
    micro-batch of rows holds as many tokens as max_seq_length allows instead of micro_batch_size conversations.

    Each row is `{"input_ids", "labels", "position_ids"}` (lists of ints): its conversations end to end, position
    ids restarting at 0 at each (so none attends to another) and each one's first label masked (so no loss
    crosses a boundary). Every conversation is in exactly one row; equal lengths go in the order of `items`, so
    the rows are deterministic.
    """
    lengths = [len(item["input_ids"]) for item in items]
    if lengths and max(lengths) > max_len:
        raise ValueError(f"a conversation of {max(lengths)} tokens does not fit a row of {max_len}")
    return [concatenate([items[i] for i in b]) for b in _bins_by_length(lengths, max_len)]
