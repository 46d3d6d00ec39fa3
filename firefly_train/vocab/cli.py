"""`firefly-train vocab train|merge|stats`: train a Chinese SentencePiece model, merge it into a base
tokenizer (SentencePiece or byte-level BPE), and measure tokenizers on a corpus."""
from __future__ import annotations

from pathlib import Path

from firefly_core.errors import FireflyError
from firefly_core.io import write_json
from firefly_train.vocab import merge_bpe, merge_sp
from firefly_train.vocab.stats import format_table, measure, resolve_tokenizer_path, tokenizer_kind
from firefly_train.vocab.train_sp import MODEL_NAME, train


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="vocab_command", metavar="ACTION", required=True)
    t = sub.add_parser("train", help="train a Chinese SentencePiece model on a corpus")
    t.add_argument("--corpus", nargs="+", required=True, metavar="FILE", help=".txt, .jsonl ({'text'}) or .csv (text)")
    t.add_argument("--vocab-size", type=int, required=True, metavar="N")
    t.add_argument("--model-type", choices=["bpe", "unigram"], default="bpe",
                   help="bpe (default: merges best into BPE bases) or unigram")
    t.add_argument("-o", "--output", required=True, metavar="DIR", help="writes DIR/chinese_sp.model and .vocab")
    m = sub.add_parser("merge", help="add a SentencePiece model's pieces to a base tokenizer, keeping its ids")
    m.add_argument("--base", required=True, metavar="TOKENIZER",
                   help="a SentencePiece .model, an HF tokenizer folder, or a model alias (smollm2-135m)")
    m.add_argument("--add", required=True, metavar="SP_MODEL", help="the SentencePiece model whose pieces are added")
    m.add_argument("--pad-to-multiple-of", type=int, default=None, metavar="K",
                   help="append never-emitted padding entries until the size is a multiple of K (e.g. 64)")
    m.add_argument("-o", "--output", required=True, metavar="DIR", help="an HF tokenizer folder (AutoTokenizer)")
    s = sub.add_parser("stats", help="tokens and tokens per character of tokenizers on a corpus")
    s.add_argument("--tokenizer", action="append", required=True, metavar="TOKENIZER",
                   help="repeat; reductions are against the first")
    s.add_argument("--corpus", nargs="+", required=True, metavar="FILE")
    s.add_argument("--json", default=None, metavar="OUT", help="write the result (docs/CONTRACTS.md format)")


def _merge(args) -> None:
    if args.pad_to_multiple_of is not None and args.pad_to_multiple_of < 1:
        raise FireflyError(f"--pad-to-multiple-of must be positive, got {args.pad_to_multiple_of}")
    base = resolve_tokenizer_path(args.base)
    kind = tokenizer_kind(base)
    if kind == "sentencepiece":
        info = merge_sp.merge(base, args.add, args.output, args.pad_to_multiple_of)
        print(f"{info['base_pieces']} + {info['appended']} appended ({info['appended_reserved_ascii']} ASCII-only "
              f"reserved) + {info['padding']} padding = {info['merged_pieces']} pieces -> {args.output}")
    elif kind == "bytelevel_bpe":
        info = merge_bpe.merge(base, args.add, args.output, args.pad_to_multiple_of)
        print(f"{info['base_vocab']} + {info['added_pieces']} pieces + {info['added_intermediates']} intermediate "
              f"tokens + {info['padding']} padding = {info['vocab_size']} ({info['new_merges']} new merges) "
              f"-> {args.output}")
    else:
        raise FireflyError(f"unsupported base tokenizer {base}: merge needs a SentencePiece model or a byte-level "
                           "BPE tokenizer.json (WordPiece, Unigram tokenizer.json and others are not supported)")


def run(args) -> int:
    if args.vocab_command == "train":
        info = train(args.corpus, args.vocab_size, args.output, args.model_type)
        print(f"{info['vocab_size']} pieces ({info['model_type']}) from {info['chars']} chars in "
              f"{info['train_seconds']} s -> {Path(args.output) / MODEL_NAME}.model")
    elif args.vocab_command == "merge":
        _merge(args)
    else:
        result = measure(args.tokenizer, args.corpus)
        print(format_table(result))
        if args.json:
            write_json(args.json, result)
    return 0
