"""Deterministic document-level splits and packing of token ids into fixed-length sequences."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

import torch

DEFAULT_SPLITS = {"train": 0.85, "reference": 0.10, "validation": 0.05}
"""``train`` for the diffusion model and the AR baseline, ``reference`` (disjoint) for the causal
reference model of generative perplexity, ``validation`` for held-out likelihoods."""


def _split_sizes(n: int, fractions: Sequence[float]) -> list[int]:
    """Largest-remainder allocation of `n` items with at least one item per split."""
    total = sum(fractions)
    exact = [n * f / total for f in fractions]
    sizes = [max(1, math.floor(x)) for x in exact]
    order = sorted(
        range(len(fractions)), key=lambda k: exact[k] - math.floor(exact[k]), reverse=True
    )
    k = 0
    while sum(sizes) < n:
        sizes[order[k % len(order)]] += 1
        k += 1
    while sum(sizes) > n:  # only when the max(1, .) floors overshoot: shrink the largest split
        sizes[sizes.index(max(sizes))] -= 1
    return sizes


def _cut_at_lines(text: str, fractions: Sequence[float]) -> list[str]:
    """Cut one text into consecutive pieces of about the given fractions, at line boundaries."""
    total, pieces, start, acc = sum(fractions), [], 0, 0.0
    for f in fractions[:-1]:
        acc += f / total
        cut = text.find("\n", int(acc * len(text)))
        cut = len(text) if cut < 0 else cut + 1
        pieces.append(text[start:cut])
        start = max(start, cut)
    pieces.append(text[start:])
    return pieces


def split_documents(
    documents: Sequence[str],
    fractions: Mapping[str, float] = DEFAULT_SPLITS,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Assign whole documents to named splits by a seeded permutation (same input, same split).

    Documents keep their original order inside a split. With fewer documents than splits, each
    document is instead cut at line boundaries into consecutive pieces, one per split, so that
    no text is shared between splits.
    """
    names = list(fractions)
    if not names or any(f <= 0 for f in fractions.values()):
        raise ValueError(f"split fractions must be positive, got {dict(fractions)}")
    if not documents:
        raise ValueError("no documents to split")
    if len(documents) < len(names):
        pieces = [_cut_at_lines(doc, list(fractions.values())) for doc in documents]
        return {name: [p[k] for p in pieces if p[k].strip()] for k, name in enumerate(names)}
    order = list(range(len(documents)))
    random.Random(seed).shuffle(order)
    splits, start = {}, 0
    for name, size in zip(names, _split_sizes(len(documents), list(fractions.values()))):
        splits[name] = [documents[i] for i in sorted(order[start : start + size])]
        start += size
    return splits


def pack_sequences(
    token_ids: Sequence[Sequence[int]],
    seq_len: int,
    bos_id: int,
    eos_id: int,
    pad_id: int | None = None,
    source: str = "corpus",
) -> torch.Tensor:
    """Pack documents into a ``[N, seq_len]`` LongTensor.

    Each document becomes ``[BOS] ids [EOS]``. With ``pad_id=None`` (packing, as in MDLM/BD3LM's
    "wrapped" data) the documents are concatenated and cut into consecutive sequences, dropping the
    incomplete tail. With a `pad_id` each document starts its own sequences and the last one is
    right-padded. A corpus too small for one sequence is an error naming `source`.
    """
    if seq_len < 2:
        raise ValueError(f"seq_len={seq_len} must be at least 2 (room for BOS and EOS)")
    pieces = [[bos_id, *ids, eos_id] for ids in token_ids]
    if pad_id is None:
        stream = [i for piece in pieces for i in piece]
        n = len(stream) // seq_len
        if n == 0:
            raise ValueError(
                f"{source}: too small for one sequence: {len(stream)} tokens (with BOS/EOS) "
                f"< seq_len={seq_len}"
            )
        return torch.tensor(stream[: n * seq_len], dtype=torch.long).view(n, seq_len)
    rows = []
    for piece in pieces:
        for start in range(0, len(piece), seq_len):
            row = piece[start : start + seq_len]
            rows.append(row + [pad_id] * (seq_len - len(row)))
    if not rows:
        raise ValueError(f"{source}: too small for one sequence: no documents")
    return torch.tensor(rows, dtype=torch.long)
