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

from polydiff.core.io import atomic_save_safetensors, load_safetensors
from polydiff.text.data.corpora import builtin_documents, builtin_fingerprint
from polydiff.text.data.packing import DEFAULT_SPLITS, pack_sequences, split_documents
from polydiff.text.data.readers import read_documents
from polydiff.text.data.tokenizer import Tokenizer

BUILTIN_PREFIX = "builtin:"
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
