"""Vocabulary expansion: train a Chinese SentencePiece model, merge it into a base tokenizer keeping every
base id, measure tokenizers, and grow a model's embeddings to the merged tokenizer (docs/vocab.md)."""
