"""Text data: readers, built-in corpora, tokenizers, splits, packing and the token cache."""

from polydiff.text.data.corpora import (
    BUILTIN_CORPORA,
    builtin_documents,
    shakespeare_plays,
    stdlib_docstrings,
    strip_markdown,
)
from polydiff.text.data.dataset import (
    PackedCorpus,
    load_source,
    prepare_corpus,
    prepare_data,
)
from polydiff.text.data.packing import DEFAULT_SPLITS, pack_sequences, split_documents
from polydiff.text.data.readers import read_documents, read_jsonl, read_text_file
from polydiff.text.data.tokenizer import (
    SPECIAL_TOKENS,
    BPETokenizer,
    ByteTokenizer,
    Tokenizer,
    load_tokenizer,
    make_tokenizer,
)

__all__ = [
    "BUILTIN_CORPORA",
    "DEFAULT_SPLITS",
    "SPECIAL_TOKENS",
    "BPETokenizer",
    "ByteTokenizer",
    "PackedCorpus",
    "Tokenizer",
    "builtin_documents",
    "load_source",
    "load_tokenizer",
    "make_tokenizer",
    "pack_sequences",
    "prepare_corpus",
    "prepare_data",
    "read_documents",
    "read_jsonl",
    "read_text_file",
    "shakespeare_plays",
    "split_documents",
    "stdlib_docstrings",
    "strip_markdown",
]
