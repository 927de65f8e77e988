"""polydiff.core.io: atomic writes, JSON and safetensors helpers."""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from polydiff.core.io import (
    atomic_path,
    atomic_save_safetensors,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    load_safetensors,
    nan_to_none,
    read_json,
    remove_stale_temps,
    safetensors_metadata,
)


def _only(folder):
    return sorted(p.name for p in folder.iterdir())


def test_atomic_writers_round_trip_and_leave_no_temp(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "sub" / "b.txt", "héllo")
    atomic_write_json(tmp_path / "c.json", {"x": [1, 2.5, None], "y": "z"})
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "sub" / "b.txt").read_text(encoding="utf-8") == "héllo"
    assert read_json(tmp_path / "c.json") == {"x": [1, 2.5, None], "y": "z"}
    assert _only(tmp_path) == ["a.bin", "c.json", "sub"]
    assert _only(tmp_path / "sub") == ["b.txt"]


def test_atomic_path_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "state.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_text("new, half writ")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert _only(tmp_path) == ["state.txt"]


def test_atomic_path_replaces_and_uses_a_temp_in_the_same_folder(tmp_path):
    target = tmp_path / "state.txt"
    atomic_write_text(target, "old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_text("new")
        assert target.read_text() == "old"  # untouched until the body succeeded
    assert target.read_text() == "new"


def test_atomic_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing was written"), atomic_path(tmp_path / "x"):
        pass
    assert not (tmp_path / "x").exists()
    with pytest.raises(IsADirectoryError, match=re.escape(str(tmp_path))), atomic_path(tmp_path):
        pass


def test_json_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"bad\.json"):
        atomic_write_json(tmp_path / "bad.json", {"x": object()})
    with pytest.raises(ValueError, match=r"nan\.json"):
        atomic_write_json(tmp_path / "nan.json", {"x": float("nan")})  # strict JSON
    assert _only(tmp_path) == []
    with pytest.raises(FileNotFoundError, match=r"missing\.json"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"broken\.json"):
        read_json(tmp_path / "broken.json")


def test_nan_to_none_makes_strict_json_of_nested_results(tmp_path):
    doc = {"a": [1.0, float("nan"), (float("inf"), 2)], "b": {"ci": float("-inf"), "n": 3}}
    clean = nan_to_none(doc)
    assert clean == {"a": [1.0, None, [None, 2]], "b": {"ci": None, "n": 3}}
    assert doc["b"]["ci"] == float("-inf")  # a copy: the input is untouched
    atomic_write_json(tmp_path / "ok.json", clean)
    assert read_json(tmp_path / "ok.json") == clean


def test_safetensors_round_trip_with_views_ties_and_metadata(tmp_path):
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    tensors = {
        "w": base.t(),  # non-contiguous
        "tied_a": base,
        "tied_b": base,  # shares storage with tied_a
        "i": torch.tensor([1, 2, 3], dtype=torch.int64),
        "h": torch.ones(2, dtype=torch.bfloat16),
    }
    path = atomic_save_safetensors(tmp_path / "m.safetensors", tensors, {"k": "v"})
    loaded = load_safetensors(path)
    assert loaded.keys() == tensors.keys()
    for k, v in tensors.items():
        assert loaded[k].dtype == v.dtype and torch.equal(loaded[k], v), k
    assert safetensors_metadata(path) == {"k": "v"}
    assert _only(tmp_path) == ["m.safetensors"]


def test_safetensors_errors(tmp_path):
    with pytest.raises(ValueError, match="str to str"):
        atomic_save_safetensors(tmp_path / "m.safetensors", {"a": torch.ones(1)}, {"k": 1})
    with pytest.raises(ValueError, match="entry 'a' is list"):
        atomic_save_safetensors(tmp_path / "m.safetensors", {"a": [1.0]})
    assert _only(tmp_path) == []
    with pytest.raises(FileNotFoundError, match=r"nope\.safetensors"):
        load_safetensors(tmp_path / "nope.safetensors")
    # A pickle renamed to .safetensors is rejected, not unpickled.
    (tmp_path / "evil.safetensors").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match=r"evil\.safetensors"):
        load_safetensors(tmp_path / "evil.safetensors")


def test_remove_stale_temps_only_removes_temporaries(tmp_path):
    atomic_write_text(tmp_path / "keep.txt", "x")
    (tmp_path / ".keep.txt.123-abcd.tmp").write_text("half")
    (tmp_path / "notes.tmp").write_text("not ours: not hidden")
    removed = remove_stale_temps(tmp_path)
    assert [p.name for p in removed] == [".keep.txt.123-abcd.tmp"]
    assert _only(tmp_path) == ["keep.txt", "notes.tmp"]
    assert remove_stale_temps(tmp_path / "absent") == []


def test_json_is_indented_and_ends_with_newline(tmp_path):
    atomic_write_json(tmp_path / "c.json", {"a": 1})
    text = (tmp_path / "c.json").read_text()
    assert text.endswith("\n") and json.loads(text) == {"a": 1} and "\n  " in text


def test_loading_exported_weights_does_not_import_lightning():
    code = (
        "import sys; from polydiff.core.train import export, load_config, load_weights; "
        "print(any(m.split('.')[0] == 'lightning' for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_check_creatable_refuses_a_path_under_a_regular_file(tmp_path):
    from polydiff.core.errors import InputError
    from polydiff.core.io import check_creatable

    (tmp_path / "file").write_text("x")
    check_creatable(tmp_path / "new" / "deeper" / "out.wav", "output")  # folders to be made
    with pytest.raises(InputError, match=r"^output=a: .*file is a file, not a folder"):
        check_creatable(tmp_path / "file" / "sub" / "out.wav", "output=a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # the probe left nothing


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_check_creatable_probes_a_folder_no_one_can_write_even_root():
    """/proc takes no new folders, whatever os.access says (tests run as root in CI)."""
    from polydiff.core.errors import InputError
    from polydiff.core.io import check_creatable

    with pytest.raises(InputError, match=r"^hydra.run.dir=/proc/x: /proc is not writable \("):
        check_creatable(Path("/proc/polydiff/run/x"), "hydra.run.dir=/proc/x")
