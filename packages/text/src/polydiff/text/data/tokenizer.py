"""Tokenizers with the four special tokens discrete diffusion LMs need: BOS, EOS, PAD and MASK
(the absorbing state of masked diffusion).

- :class:`ByteTokenizer`: the 256 byte values plus the specials (vocabulary 260), no training.
- :class:`BPETokenizer`: a byte-level BPE trained with Hugging Face ``tokenizers`` (specials take
  ids 0-3, so every byte sequence is encodable and decoding is lossless).

Both save to a directory (``tokenizer_config.json`` + ``tokenizer.json`` for BPE) and load back
with :func:`load_tokenizer`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import ClassVar

from polydiff.core.io import atomic_path, atomic_write_json

CONFIG_FILE = "tokenizer_config.json"
HF_FILE = "tokenizer.json"
FORMAT = "polydiff-text-tokenizer"
SPECIAL_TOKENS = ("<bos>", "<eos>", "<pad>", "<mask>")


class Tokenizer:
    """Common interface: ``encode``/``decode``, the special ids and ``save``."""

    kind: ClassVar[str]
    vocab_size: int
    bos_id: int
    eos_id: int
    pad_id: int
    mask_id: int

    @property
    def special_ids(self) -> tuple[int, int, int, int]:
        return (self.bos_id, self.eos_id, self.pad_id, self.mask_id)

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        raise NotImplementedError

    def fingerprint(self) -> str:
        """Hash of everything that determines the token ids (for cache keys)."""
        raise NotImplementedError

    def _config(self) -> dict:
        return {
            "format": FORMAT,
            "version": 1,
            "kind": self.kind,
            "vocab_size": self.vocab_size,
            "special_tokens": dict(zip(("bos", "eos", "pad", "mask"), self.special_ids)),
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the tokenizer into `directory` (created if needed), each file atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_json(directory / CONFIG_FILE, self._config())
        return directory


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes as tokens 0-255; BOS, EOS, PAD, MASK are 256-259."""

    kind = "byte"

    def __init__(self) -> None:
        self.vocab_size = 260
        self.bos_id, self.eos_id, self.pad_id, self.mask_id = 256, 257, 258, 259

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        names = dict(zip(self.special_ids, SPECIAL_TOKENS))
        out, pending = [], bytearray()
        for i in ids:
            i = int(i)
            if i < 256:
                pending.append(i)
                continue
            out.append(pending.decode("utf-8", errors="replace"))
            pending = bytearray()
            if not skip_special:
                out.append(names.get(i, f"<unk:{i}>"))
        out.append(pending.decode("utf-8", errors="replace"))
        return "".join(out)

    def fingerprint(self) -> str:
        return "byte-v1"


class BPETokenizer(Tokenizer):
    """A Hugging Face byte-level BPE ``tokenizers.Tokenizer`` with our four special tokens."""

    kind = "bpe"

    def __init__(self, hf_tokenizer) -> None:
        self.hf = hf_tokenizer
        ids = [hf_tokenizer.token_to_id(tok) for tok in SPECIAL_TOKENS]
        missing = [tok for tok, i in zip(SPECIAL_TOKENS, ids) if i is None]
        if missing:
            raise ValueError(f"BPE tokenizer lacks the special tokens {missing}")
        self.bos_id, self.eos_id, self.pad_id, self.mask_id = ids
        self.vocab_size = hf_tokenizer.get_vocab_size(with_added_tokens=True)

    @classmethod
    def train(
        cls, texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2
    ) -> BPETokenizer:
        """Train a byte-level BPE (Radford et al., 2019, "Language Models are Unsupervised
        Multitask Learners", Sec. 2.2) on `texts`; the 256 byte symbols are always in the vocab."""
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        if vocab_size < 256 + len(SPECIAL_TOKENS):
            raise ValueError(
                f"vocab_size={vocab_size} must be at least {256 + len(SPECIAL_TOKENS)}"
            )
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        hf.train_from_iterator(texts, trainer=trainer)
        return cls(hf)

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.hf.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=skip_special)

    def fingerprint(self) -> str:
        return "bpe-" + hashlib.sha256(self.hf.to_str().encode()).hexdigest()[:16]

    def save(self, directory: str | os.PathLike) -> Path:
        directory = super().save(directory)
        with atomic_path(directory / HF_FILE) as tmp:
            self.hf.save(str(tmp))
        return directory


def load_tokenizer(directory: str | os.PathLike) -> Tokenizer:
    """Load a tokenizer written by :meth:`Tokenizer.save`; unknown or broken files raise errors
    that name the file."""
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: tokenizer directory does not exist")
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: missing; {directory} is not a polydiff tokenizer")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{config_path}: not a valid tokenizer config ({err})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(f"{config_path}: unknown tokenizer file (format is not {FORMAT!r})")
    kind = config.get("kind")
    if kind == "byte":
        tokenizer: Tokenizer = ByteTokenizer()
    elif kind == "bpe":
        from tokenizers import Tokenizer as HFTokenizer

        hf_path = directory / HF_FILE
        if not hf_path.is_file():
            raise FileNotFoundError(f"{hf_path}: missing (needed by a BPE tokenizer)")
        try:
            hf = HFTokenizer.from_file(str(hf_path))
        except Exception as err:  # tokenizers raises plain Exception on bad files
            raise ValueError(
                f"{hf_path}: not a valid Hugging Face tokenizer file ({err})"
            ) from None
        tokenizer = BPETokenizer(hf)
    else:
        raise ValueError(
            f"{config_path}: unknown tokenizer kind {kind!r} (expected 'byte' or 'bpe')"
        )
    expected = config.get("special_tokens", {})
    actual = dict(zip(("bos", "eos", "pad", "mask"), tokenizer.special_ids))
    if expected != actual or config.get("vocab_size") != tokenizer.vocab_size:
        raise ValueError(
            f"{config_path}: config (vocab {config.get('vocab_size')}, specials {expected}) does "
            f"not match the tokenizer (vocab {tokenizer.vocab_size}, specials {actual})"
        )
    return tokenizer


def make_tokenizer(
    kind: str = "byte",
    texts: Iterable[str] | None = None,
    vocab_size: int = 4096,
    directory: str | os.PathLike | None = None,
) -> Tokenizer:
    """The tokenizer saved in `directory` if there is one, else a new one (a BPE is trained on
    `texts`), saved to `directory` when given."""
    if directory is not None and (Path(directory) / CONFIG_FILE).is_file():
        tokenizer = load_tokenizer(directory)
        if tokenizer.kind != kind:
            raise ValueError(f"{directory}: holds a {tokenizer.kind!r} tokenizer, not {kind!r}")
        return tokenizer
    if kind == "byte":
        tokenizer = ByteTokenizer()
    elif kind == "bpe":
        if texts is None:
            raise ValueError("training a BPE tokenizer needs texts")
        tokenizer = BPETokenizer.train(texts, vocab_size=vocab_size)
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r} (expected 'byte' or 'bpe')")
    if directory is not None:
        tokenizer.save(directory)
    return tokenizer
