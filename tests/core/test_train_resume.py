"""Kill a training run mid-checkpoint-write (SIGKILL), rerun the same command, compare weights.

The run (tests/core/train_script.py) checkpoints every 10 steps of 30; 8 batches make an epoch,
so step 10 is mid-epoch. The first launch is SIGKILLed while writing the checkpoint of step 20,
after step 10's checkpoint was written. The same command again must resume at step 10 (not 0)
from an intact last.ckpt, finish at step 30, and end with exactly the weights (network and EMA)
of an uninterrupted run: the data order, the loss noise (RNG state), optimizer, scheduler and
EMA are all restored.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from polydiff.core.io import read_json
from polydiff.core.train import load_checkpoint

SCRIPT = Path(__file__).with_name("train_script.py")


def _load_script():
    spec = importlib.util.spec_from_file_location("polydiff_train_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _launch(run_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(SCRIPT), str(run_dir), "--kill-in-save-at-step", "20"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def test_sigkill_mid_checkpoint_then_rerun_matches_uninterrupted_run(tmp_path):
    run_dir = tmp_path / "run"
    first = _launch(run_dir)
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]

    ckpt_dir = run_dir / "checkpoints"
    stale = list(ckpt_dir.glob(".*.tmp"))
    assert stale, "the kill should have left a half-written temporary checkpoint"
    last = load_checkpoint(ckpt_dir / "last.ckpt")  # weights_only=True; intact after the kill
    assert last["global_step"] == 10
    assert not (run_dir / "final").exists()

    second = _launch(run_dir)  # the same command again
    assert second.returncode == 0, second.stderr[-3000:]
    summary = read_json(run_dir / "final" / "rank0.json")
    assert summary["start_step"] == 10
    assert summary["final_step"] == 30
    assert not list(ckpt_dir.glob(".*.tmp"))
    assert load_checkpoint(ckpt_dir / "last.ckpt")["global_step"] == 30
    resumed = load_file(run_dir / "final" / "rank0.safetensors")

    # Reference: the same run without interruption, in this process (single-threaded like the
    # script; the RNG is forked so other tests are unaffected).
    script = _load_script()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            module = script.train(tmp_path / "reference")
    finally:
        torch.set_num_threads(threads)
    reference = script.final_weights(module)

    assert resumed.keys() == reference.keys()
    for name, value in reference.items():
        assert torch.equal(resumed[name], value), name
    # And training did something: the weights moved away from their initialisation.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        init = torch.nn.Linear(3, 32).weight
    assert not torch.allclose(resumed["net.0.weight"], init)
