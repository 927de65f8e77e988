"""Readers for the user's text: one file, a directory of ``.txt`` files, or JSON Lines.

Every reader returns a list of documents (strings). Documents are the unit of the train/validation
split, so a directory of files or a ``.jsonl`` with one record per document splits cleanly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from polydiff.core.errors import InputError

JSONL_SUFFIXES = (".jsonl", ".ndjson")


def decode_text(data: bytes, source: str | os.PathLike) -> str:
    """Decode UTF-8 bytes, rejecting binary content with an error that names `source`."""
    if b"\x00" in data:
        raise InputError(f"{source}: looks like a binary file (contains NUL bytes), expected text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(
            f"{source}: not valid UTF-8 text (byte {err.start}: {err.reason}); "
            "is it a binary file or in another encoding?"
        ) from None


def read_text_file(path: str | os.PathLike) -> str:
    """Read one text file; empty (or whitespace-only) and binary files are errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such text file")
    text = decode_text(path.read_bytes(), path)
    if not text.strip():
        raise InputError(f"{path}: the file is empty (no text to train on)")
    return text


def read_jsonl(path: str | os.PathLike, text_field: str = "text") -> list[str]:
    """Read a JSON Lines file whose records hold each document in ``record[text_field]``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such JSON Lines file")
    documents = []
    for lineno, line in enumerate(decode_text(path.read_bytes(), path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}:{lineno}: invalid JSON ({err.msg})") from None
        if not isinstance(record, dict) or text_field not in record:
            raise InputError(f"{path}:{lineno}: record has no text field {text_field!r}")
        if not isinstance(record[text_field], str):
            raise InputError(f"{path}:{lineno}: field {text_field!r} is not a string")
        if record[text_field].strip():
            documents.append(record[text_field])
    if not documents:
        raise InputError(f"{path}: no non-empty {text_field!r} records (the file is empty)")
    return documents


def read_documents(path: str | os.PathLike, *, text_field: str = "text") -> list[str]:
    """Documents from a text file (one document), a directory (each ``*.txt`` below it, sorted, is
    one document) or a ``.jsonl``/``.ndjson`` file (one document per record's `text_field`)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if not path.is_dir() and not path.is_file():  # reading a FIFO would wait for a writer
        raise InputError(f"{path}: not a regular file or folder (a FIFO, socket or device?)")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise InputError(f"{path}: the directory holds no .txt files")
        return [read_text_file(f) for f in files]
    if path.suffix.lower() in JSONL_SUFFIXES:
        return read_jsonl(path, text_field)
    return [read_text_file(path)]
