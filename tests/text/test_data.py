"""Data pipeline of polydiff.text: readers, corpora, tokenizers, splits, packing, cache, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from polydiff.text.data import (
    BPETokenizer,
    ByteTokenizer,
    load_tokenizer,
    make_tokenizer,
    pack_sequences,
    prepare_corpus,
    read_documents,
    shakespeare_plays,
    split_documents,
    stdlib_docstrings,
    strip_markdown,
)
from polydiff.text.data.corpora import _module_docstrings

TEXTS = [
    "the cat sat on the mat. the dog sat on the log.\n",
    "a bird in the hand is worth two in the bush.\n",
    "to be or not to be, that is the question.\n",
    "all that glitters is not gold; the cat knows.\n",
]


# ---- readers ---------------------------------------------------------------------------------


def test_read_file_directory_and_jsonl(tmp_path):
    (tmp_path / "one.txt").write_text("hello world\n")
    assert read_documents(tmp_path / "one.txt") == ["hello world\n"]

    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "b.txt").write_text("second")
    (corpus / "a.txt").write_text("first")
    (corpus / "sub" / "c.txt").write_text("third")
    (corpus / "ignored.md").write_text("not a txt")
    assert read_documents(corpus) == ["first", "second", "third"]

    jsonl = tmp_path / "data.jsonl"
    rows = [{"body": "doc one", "id": 1}, {"body": "doc two"}, {"body": "   "}]
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert read_documents(jsonl, text_field="body") == ["doc one", "doc two"]


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"", "empty"), (b"  \n\n", "empty"), (b"ab\x00cd", "binary"), (b"\xff\xfe\xfa", "UTF-8")],
)
def test_bad_files_name_the_file(tmp_path, content, match):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as err:
        read_documents(path)
    assert "bad.txt" in str(err.value)
    # the same file inside a directory is reported by name too
    with pytest.raises(ValueError, match=r"bad.txt"):
        read_documents(tmp_path)


def test_reader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing.txt"):
        read_documents(tmp_path / "missing.txt")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ValueError, match=r"no .txt files"):
        read_documents(tmp_path / "empty_dir")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{not json}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: invalid JSON"):
        read_documents(bad)
    bad.write_text('{"text": "ok"}\n{"body": "x"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: record has no text field 'text'"):
        read_documents(bad)
    bad.write_text('{"text": 3}\n')
    with pytest.raises(ValueError, match="not a string"):
        read_documents(bad)
    bad.write_text("")
    with pytest.raises(ValueError, match="empty"):
        read_documents(bad)


# ---- built-in corpora ------------------------------------------------------------------------


def test_strip_markdown():
    md = (
        "# Hamlet\n\n## ACT I\n\n_Enter BERNARDO_\n\n**BERNARDO**  \nWho's there?  \n"
        "Stand \\[aside\\]\\-now.\n\n\n\n**FRANCISCO**  \nNay.\n"
    )
    assert strip_markdown(md) == (
        "Hamlet\n\nACT I\n\nEnter BERNARDO\n\nBERNARDO:\nWho's there?\nStand [aside]-now.\n\n"
        "FRANCISCO:\nNay.\n"
    )


def test_shakespeare_corpus():
    plays = shakespeare_plays()
    assert len(plays) >= 37
    text = "".join(plays)
    assert len(text) > 4_000_000
    assert not any(mark in text for mark in ("**", "##", "\\[", "  \n"))
    hamlet = next(p for p in plays if p.startswith("Hamlet"))
    assert "HAMLET:\nTo be, or not to be" in hamlet


def test_stdlib_docstrings(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text(
        '"""Module doc."""\n\nclass A:\n    """Class doc."""\n\n    def f(self):\n'
        '        """Method doc."""\n\n\ndef g():\n    return 1\n'
    )
    assert _module_docstrings(source) == "Module doc.\n\nClass doc.\n\nMethod doc."
    json_package = Path(json.__file__).parent  # a small slice of the standard library
    docs = stdlib_docstrings(root=json_package)
    assert docs == stdlib_docstrings(root=json_package)
    assert 2 <= len(docs) <= len(list(json_package.glob("*.py")))
    assert docs[0].startswith("JSON (JavaScript Object Notation)")
    assert all(len(d) >= 200 for d in docs)


# ---- tokenizers ------------------------------------------------------------------------------


def test_byte_tokenizer_roundtrip_and_specials(tmp_path):
    tok = ByteTokenizer()
    text = "Ünïcode ✓ and ascii"
    ids = tok.encode(text)
    assert max(ids) < 256 and tok.decode(ids) == text
    assert tok.vocab_size == 260 and len(set(tok.special_ids)) == 4
    assert min(tok.special_ids) == 256
    assert tok.decode([tok.bos_id, *tok.encode("hi"), tok.eos_id]) == "hi"
    assert tok.decode([tok.bos_id, 104, tok.mask_id], skip_special=False) == "<bos>h<mask>"
    loaded = load_tokenizer(tok.save(tmp_path / "tok"))
    assert isinstance(loaded, ByteTokenizer) and loaded.special_ids == tok.special_ids


def test_bpe_tokenizer_train_save_load(tmp_path):
    tok = BPETokenizer.train(TEXTS * 20, vocab_size=300, min_frequency=2)
    assert tok.vocab_size == 300
    assert tok.special_ids == (0, 1, 2, 3)
    text = "the cat sat on the log ✓ — unseen bytes too \x07"
    ids = tok.encode(text)
    assert tok.decode(ids) == text  # byte-level: every string round-trips
    assert len(ids) < len(text.encode())  # merges were learned
    assert BPETokenizer.train(TEXTS * 20, vocab_size=300).fingerprint() == tok.fingerprint()
    loaded = load_tokenizer(tok.save(tmp_path / "bpe"))
    assert loaded.fingerprint() == tok.fingerprint()
    assert loaded.encode(text) == ids and loaded.special_ids == tok.special_ids
    assert make_tokenizer("bpe", directory=tmp_path / "bpe").fingerprint() == tok.fingerprint()


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tokenizer(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"tokenizer_config.json"):
        load_tokenizer(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"bad.tokenizer_config.json"):
        load_tokenizer(bad)
    (bad / "tokenizer_config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="unknown tokenizer file"):
        load_tokenizer(bad)
    (bad / "tokenizer_config.json").write_text(
        json.dumps({"format": "polydiff-text-tokenizer", "kind": "wordpiece"})
    )
    with pytest.raises(ValueError, match="unknown tokenizer kind 'wordpiece'"):
        load_tokenizer(bad)
    bpe_dir = BPETokenizer.train(TEXTS, vocab_size=270).save(tmp_path / "bpe")
    (bpe_dir / "tokenizer.json").write_text("garbage")
    with pytest.raises(ValueError, match=r"tokenizer.json: not a valid"):
        load_tokenizer(bpe_dir)
    os.remove(bpe_dir / "tokenizer.json")
    with pytest.raises(FileNotFoundError, match=r"tokenizer.json: missing"):
        load_tokenizer(bpe_dir)
    byte_dir = ByteTokenizer().save(tmp_path / "byte")
    config = json.loads((byte_dir / "tokenizer_config.json").read_text())
    config["vocab_size"] = 300
    (byte_dir / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="does not match"):
        load_tokenizer(byte_dir)
    with pytest.raises(ValueError, match="holds a 'byte' tokenizer"):
        make_tokenizer("bpe", TEXTS, directory=ByteTokenizer().save(tmp_path / "b2"))


# ---- splits and packing ----------------------------------------------------------------------


def test_split_is_deterministic_disjoint_and_by_document():
    docs = [f"document {i}\n" for i in range(40)]
    fractions = {"train": 0.8, "reference": 0.1, "validation": 0.1}
    a = split_documents(docs, fractions, seed=3)
    assert a == split_documents(docs, fractions, seed=3)
    assert a != split_documents(docs, fractions, seed=4)
    assert [len(a[k]) for k in fractions] == [32, 4, 4]
    assert sorted(d for docs_k in a.values() for d in docs_k) == sorted(
        docs
    )  # a partition of the documents
    assert all(a[k] == sorted(a[k], key=docs.index) for k in a)  # original order kept
    # tiny corpora still give every split a document
    small = split_documents(docs[:3], fractions)
    assert [len(small[k]) for k in fractions] == [1, 1, 1]


def test_split_single_document_cuts_at_lines():
    doc = "".join(f"line {i}\n" for i in range(100))
    parts = split_documents([doc], {"train": 0.9, "validation": 0.1})
    assert parts["train"][0] + parts["validation"][0] == doc
    assert parts["validation"][0].startswith("line ") and parts["train"][0].endswith("\n")
    assert 5 <= parts["validation"][0].count("\n") <= 12


def test_pack_sequences_with_bos_eos():
    docs = [[5, 6, 7], [8], [9, 10]]
    packed = pack_sequences(docs, seq_len=4, bos_id=1, eos_id=2)
    # stream: 1 5 6 7 2 1 8 2 1 9 10 2 -> three rows of 4
    assert packed.tolist() == [[1, 5, 6, 7], [2, 1, 8, 2], [1, 9, 10, 2]]
    assert packed.dtype == torch.long
    padded = pack_sequences(docs, seq_len=4, bos_id=1, eos_id=2, pad_id=0)
    assert padded.tolist() == [[1, 5, 6, 7], [2, 0, 0, 0], [1, 8, 2, 0], [1, 9, 10, 2]]
    with pytest.raises(ValueError, match=r"tiny.txt.*too small for one sequence: 5 tokens"):
        pack_sequences([[5, 6, 7]], seq_len=8, bos_id=1, eos_id=2, source="tiny.txt")


# ---- end to end with the cache ---------------------------------------------------------------


def test_prepare_corpus_and_cache(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, text in enumerate(TEXTS * 3):
        (corpus / f"{i:02d}.txt").write_text(text)
    tok = ByteTokenizer()
    fractions = {"train": 0.5, "validation": 0.5}
    cache = tmp_path / "cache"
    first = prepare_corpus(corpus, tok, 16, fractions=fractions, seed=1, cache_dir=cache)
    files = list(cache.glob("*.safetensors"))
    assert len(files) == 1 and not list(cache.glob("*.tmp"))
    again = prepare_corpus(corpus, tok, 16, fractions=fractions, seed=1, cache_dir=cache)
    for name in fractions:
        assert torch.equal(first[name], again[name])
        assert first[name].shape[1] == 16 and first[name].shape[0] >= 1
    # every sequence decodes to text from the corpus; BOS/EOS delimit the documents
    row = first["train"].flatten().tolist()
    assert row[0] == tok.bos_id and tok.eos_id in row
    # a corrupt cache file is rebuilt, with a warning naming it
    files[0].write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="rebuilding the token cache"):
        rebuilt = prepare_corpus(corpus, tok, 16, fractions=fractions, seed=1, cache_dir=cache)
    assert torch.equal(rebuilt["train"], first["train"])
    assert torch.equal(
        prepare_corpus(corpus, tok, 16, fractions=fractions, seed=1, cache_dir=cache)["train"],
        first["train"],
    )
    # the cache key follows the content: editing a file gives a new cache entry
    (corpus / "00.txt").write_text("changed text, changed text, changed text\n")
    prepare_corpus(corpus, tok, 16, fractions=fractions, seed=1, cache_dir=cache)
    assert len(list(cache.glob("*.safetensors"))) == 2


def test_prepare_corpus_too_small_names_the_file(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("tiny text\n")
    with pytest.raises(ValueError, match=r"short.txt.*too small for one sequence"):
        prepare_corpus(path, ByteTokenizer(), 64)


def test_prepare_builtin_corpus(tmp_path):
    corpus = prepare_corpus("builtin:shakespeare", ByteTokenizer(), 128, cache_dir=tmp_path)
    assert set(corpus.splits) == {"train", "reference", "validation"}
    n = {k: v.shape[0] for k, v in corpus.splits.items()}
    assert n["train"] > n["reference"] > n["validation"] > 100
    with pytest.raises(ValueError, match="unknown built-in corpus 'nope'"):
        prepare_corpus("builtin:nope", ByteTokenizer(), 128)
