"""From a text source to packed, split token tensors, cached on disk.

A *source* is a path (file, directory of ``.txt``, ``.jsonl``) or ``builtin:<name>`` for a
built-in corpus (``builtin:shakespeare``, ``builtin:stdlib_docstrings``). The result is cached as
safetensors under `cache_dir`, keyed by the source's content (or the built-in's version), the
tokenizer, the sequence length, the split and the seed.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from polydiff.core.io import atomic_save_safetensors, atomic_write_json, load_safetensors
from polydiff.text.data.corpora import builtin_documents, builtin_fingerprint
from polydiff.text.data.packing import DEFAULT_SPLITS, pack_sequences, split_documents
from polydiff.text.data.readers import read_documents
from polydiff.text.data.tokenizer import Tokenizer, load_tokenizer, make_tokenizer

BUILTIN_PREFIX = "builtin:"
SUMMARY_FILE = "data.json"
CACHE_VERSION = 1


@dataclass
class PackedCorpus:
    """Token ids of each split as ``[N, seq_len]`` LongTensors plus how they were made."""

    splits: dict[str, torch.Tensor]
    seq_len: int
    vocab_size: int
    source: str

    def __getitem__(self, split: str) -> torch.Tensor:
        if split not in self.splits:
            raise KeyError(f"no split {split!r}; have {sorted(self.splits)}")
        return self.splits[split]


def load_source(source: str | os.PathLike, text_field: str = "text") -> list[str]:
    """Documents of a source: ``builtin:<name>`` or a path read by :func:`read_documents`."""
    source = str(source)
    if source.startswith(BUILTIN_PREFIX):
        return builtin_documents(source[len(BUILTIN_PREFIX) :])
    return read_documents(source, text_field=text_field)


def _source_fingerprint(source: str, documents: Sequence[str] | None) -> str:
    if source.startswith(BUILTIN_PREFIX):
        return builtin_fingerprint(source[len(BUILTIN_PREFIX) :])
    digest = hashlib.sha256()
    for doc in documents or ():
        digest.update(hashlib.sha256(doc.encode()).digest())
    return digest.hexdigest()


def cache_key(
    source_fingerprint: str,
    tokenizer: Tokenizer,
    seq_len: int,
    fractions: Mapping[str, float],
    seed: int,
    pad: bool,
) -> str:
    spec = {
        "version": CACHE_VERSION,
        "source": source_fingerprint,
        "tokenizer": tokenizer.fingerprint(),
        "seq_len": seq_len,
        "fractions": dict(fractions),
        "seed": seed,
        "pad": pad,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def prepare_corpus(
    source: str | os.PathLike,
    tokenizer: Tokenizer,
    seq_len: int,
    *,
    fractions: Mapping[str, float] = DEFAULT_SPLITS,
    seed: int = 0,
    pad: bool = False,
    text_field: str = "text",
    cache_dir: str | os.PathLike | None = None,
) -> PackedCorpus:
    """Read, split (by document), tokenize and pack `source`; reuse the cache when it matches.

    Each split must hold at least one sequence of `seq_len` tokens, else a ValueError names the
    source and the split. ``pad=True`` pads each document instead of packing the stream.
    """
    source = str(source)
    builtin = source.startswith(BUILTIN_PREFIX)
    documents = None if builtin else load_source(source, text_field)
    key = cache_key(
        _source_fingerprint(source, documents), tokenizer, seq_len, fractions, seed, pad
    )
    cache_path = Path(cache_dir) / f"tokens-{key}.safetensors" if cache_dir is not None else None
    if cache_path is not None and cache_path.is_file():
        try:
            splits = load_safetensors(cache_path)
        except ValueError as err:  # a derived file: rebuild it rather than fail
            warnings.warn(f"{err}; rebuilding the token cache", stacklevel=2)
            splits = {}
        if set(splits) == set(fractions):
            return PackedCorpus(splits, seq_len, tokenizer.vocab_size, source)
    if documents is None:
        documents = load_source(source, text_field)
    splits = {}
    for name, docs in split_documents(documents, fractions, seed).items():
        splits[name] = pack_sequences(
            tokenizer.encode_batch(docs),
            seq_len,
            tokenizer.bos_id,
            tokenizer.eos_id,
            pad_id=tokenizer.pad_id if pad else None,
            source=f"{source} (split {name!r})",
        )
    if cache_path is not None:
        atomic_save_safetensors(cache_path, splits, metadata={"source": source, "key": key})
    return PackedCorpus(splits, seq_len, tokenizer.vocab_size, source)


def prepare_data(
    source: str | os.PathLike,
    seq_len: int,
    folder: str | os.PathLike,
    *,
    kind: str = "byte",
    vocab_size: int = 4096,
    tokenizer_dir: str | os.PathLike | None = None,
    prepared: str | os.PathLike | None = None,
    seed: int = 0,
    text_field: str = "text",
) -> tuple[Tokenizer, PackedCorpus]:
    """The tokenizer and packed splits of ``source`` for a run in ``folder``, summed up in
    ``folder/data.json`` (source, seq_len, seed, tokenizer, split sizes, cache files).

    With ``prepared`` (the folder of an earlier call, holding its ``data.json``) its tokenizer
    and token cache are reused. Otherwise the tokenizer is loaded from ``tokenizer_dir`` or made
    (``kind`` byte, or bpe trained on the source with ``vocab_size``), saved in
    ``folder/tokenizer``, and the packed splits are cached in ``folder/cache``.
    """
    folder = Path(folder)
    tok_dir, cache_dir = folder / "tokenizer", folder / "cache"
    if prepared is not None and not (Path(prepared) / SUMMARY_FILE).is_file():
        raise FileNotFoundError(
            f"{prepared}: no {SUMMARY_FILE} there; give the folder of a `polydiff text data` run"
        )
    if prepared is not None:
        tokenizer, cache_dir = (
            load_tokenizer(Path(prepared) / "tokenizer"),
            Path(prepared) / "cache",
        )
    elif tokenizer_dir is not None:
        tokenizer = load_tokenizer(tokenizer_dir)
        tokenizer.save(tok_dir)
    else:
        texts = load_source(source, text_field)
        tokenizer = make_tokenizer(kind, texts, vocab_size=vocab_size, directory=tok_dir)
    corpus = prepare_corpus(
        source, tokenizer, seq_len, seed=seed, text_field=text_field, cache_dir=cache_dir
    )
    summary = {
        "source": str(source),
        "seq_len": seq_len,
        "seed": seed,
        "tokenizer": {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size},
        "splits": {name: list(t.shape) for name, t in corpus.splits.items()},
        "cache": sorted(p.name for p in cache_dir.glob("tokens-*.safetensors")),
    }
    atomic_write_json(folder / SUMMARY_FILE, summary)
    return tokenizer, corpus
