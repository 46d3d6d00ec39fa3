"""Merge a Chinese SentencePiece model into a SentencePiece base (Llama 2, Baichuan): the Chinese-LLaMA way.

Every piece of the added model that the base lacks is appended, in the added model's order, so every
base id is unchanged and the ids match Chinese-LLaMA's merge of the same two files. Two choices differ
from a plain append with score 0, both so that the merged tokenizer provably leaves the base's
tokenization alone and converts exactly to an HF tokenizer (see docs/vocab.md):

* an appended piece made only of ASCII characters (digits such as `▁20`, `2.0`, Latin fragments such as
  `▁cr`) is appended as a reserved (CONTROL) piece: it keeps its id but takes no part in segmentation, so
  it is never emitted (an UNUSED piece would still take part in sentencepiece's merges and be split again
  afterwards, which changes English). Every emitted new piece contains a non-ASCII character, so ASCII
  text can never contain one and tokenizes exactly as before;
* appended pieces get scores below every ordinary base score, strictly decreasing in id order, so a
  base merge always wins over a new one and the HF BPE (merges ranked by score) matches sentencepiece.
"""
from __future__ import annotations

import logging
from pathlib import Path

from firefly_core.errors import FireflyError
from firefly_core.io import atomic_dir, write_json
from firefly_core.models import CHECK_TEXTS
from firefly_core.schemas import checked

log = logging.getLogger(__name__)
NORMAL, RESERVED = 1, 3
OUTLIER_SCORE = -1e8  # Llama scores runs of spaces -1e9; those never compete with Chinese pieces


def load_proto(path: str | Path):
    from sentencepiece import sentencepiece_model_pb2 as pb

    path = Path(path)
    proto = pb.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as e:  # protobuf raises DecodeError, a bare Exception subclass
        raise FireflyError(f"{path} is not a SentencePiece model ({e.__class__.__name__})") from None
    if not len(proto.pieces):
        raise FireflyError(f"{path} is not a SentencePiece model (no pieces)")
    return proto


def base_model_file(base: Path) -> Path:
    return base if base.is_file() else base / "tokenizer.model"


def merge_protos(base, added, pad_to_multiple_of: int | None = None) -> dict:
    """Append the added model's new pieces to `base` in place; returns counts."""
    have = {p.piece for p in base.pieces}
    ordinary = [p.score for p in base.pieces if p.type == NORMAL and p.score > OUTLIER_SCORE]
    score = min(ordinary, default=0.0)
    counts = {"base_pieces": len(base.pieces), "added_model_pieces": len(added.pieces), "appended": 0,
              "appended_reserved_ascii": 0, "padding": 0}
    for p in added.pieces:
        if p.type != NORMAL or p.piece in have:
            continue
        have.add(p.piece)
        new = base.pieces.add()
        new.piece = p.piece
        if all(ord(c) < 128 or c == "▁" for c in p.piece):
            new.type, new.score = RESERVED, 0.0
            counts["appended_reserved_ascii"] += 1
        else:
            score -= 1.0
            new.type, new.score = NORMAL, score
        counts["appended"] += 1
    if pad_to_multiple_of:
        while len(base.pieces) % pad_to_multiple_of:
            new = base.pieces.add()
            new.piece, new.type, new.score = f"<pad_{counts['padding']}>", RESERVED, 0.0
            counts["padding"] += 1
    counts["merged_pieces"] = len(base.pieces)
    return counts


def hf_tokenizer(model_file: Path, base: Path):
    """An HF fast tokenizer for the merged model: vocab in id order, merges ranked by piece score
    (exactly sentencepiece's BPE priority), reserved pieces never produced."""
    import sentencepiece as spm
    from tokenizers import Regex, normalizers, pre_tokenizers
    from transformers import AutoTokenizer, LlamaTokenizer, PreTrainedTokenizerFast
    from transformers.tokenization_utils_base import generate_merges

    proto = load_proto(model_file)
    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    scores = {p.piece: p.score for p in proto.pieces if p.type == NORMAL}
    skip = [p.piece for p in proto.pieces if p.type != NORMAL]
    merges = generate_merges(vocab, vocab_scores=scores, skip_tokens=skip)

    def piece(i, default):
        return sp.id_to_piece(i) if i >= 0 else default

    kwargs = {}
    if base.is_dir() and (base / "tokenizer_config.json").is_file():
        try:
            template = AutoTokenizer.from_pretrained(str(base)).chat_template
        except (OSError, ValueError):
            template = None
        if template:
            kwargs["chat_template"] = template
    specials = dict(unk_token=piece(sp.unk_id(), "<unk>"), bos_token=piece(sp.bos_id(), "<s>"),
                    eos_token=piece(sp.eos_id(), "</s>"))
    backend = LlamaTokenizer(vocab=vocab, merges=merges, add_bos_token=True, add_eos_token=False, legacy=False,
                             **specials).backend_tokenizer
    # As transformers' own conversion of Llama 2's tokenizer.model: spaces become "▁", a leading space keeps
    # its own "▁" piece, and every text segment starts with "▁", also after a special token, as when
    # sentencepiece encodes each segment on its own (Meta's Llama 2 chat encoding: "<s>[INST]" gives "▁[").
    # transformers' LlamaTokenizer rebuilds this on load and would mark only the first segment, so the
    # folder is saved as a plain fast tokenizer that keeps tokenizer.json as written.
    backend.normalizer = normalizers.Sequence([normalizers.Replace(" ", "▁"),
                                               normalizers.Replace(Regex(r"\A▁"), "▁▁")])
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=False)
    return PreTrainedTokenizerFast(tokenizer_object=backend, **specials, **kwargs)


def check_same(sp_file: Path, hf_folder: Path, texts: list[str]) -> None:
    """Raise if the saved HF tokenizer and sentencepiece disagree on any text."""
    import sentencepiece as spm
    from transformers import AutoTokenizer

    sp = spm.SentencePieceProcessor(model_file=str(sp_file))
    hf = AutoTokenizer.from_pretrained(str(hf_folder))
    for text in texts:
        a, b = sp.encode(text), hf.encode(text, add_special_tokens=False)
        if a != b:
            raise FireflyError(f"the HF conversion of the merged tokenizer differs from sentencepiece on "
                               f"{text[:40]!r}: {a[:12]} vs {b[:12]}")


def merge(base: str | Path, add: str | Path, out_dir: str | Path, pad_to_multiple_of: int | None = None) -> dict:
    """Write out_dir/tokenizer.model and an HF tokenizer folder (AutoTokenizer loads it)."""
    base, add = Path(base), Path(add)
    proto = load_proto(base_model_file(base))
    counts = merge_protos(proto, load_proto(add), pad_to_multiple_of)
    info = {"format": 1, "kind": "vocab_merge", "base_kind": "sentencepiece", "base": str(base), "added": str(add),
            **counts, "pad_to_multiple_of": pad_to_multiple_of}
    with atomic_dir(out_dir) as tmp:
        model_file = tmp / "tokenizer.model"
        model_file.write_bytes(proto.SerializeToString())
        hf_tokenizer(model_file, base).save_pretrained(str(tmp))
        check_same(model_file, tmp, CHECK_TEXTS)
        write_json(tmp / "merge_info.json", checked("vocab_merge", info))
    log.info("merged %d pieces (%d appended, %d of them ASCII-only kept reserved, %d padding) -> %s",
             counts["merged_pieces"], counts["appended"], counts["appended_reserved_ascii"], counts["padding"], out_dir)
    return info
