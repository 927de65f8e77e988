"""Two-process DDP training on CPU (gloo) through Lightning's launcher.

Lightning's `ddp` strategy re-executes the script for rank 1, so the run is a script in a
subprocess (tests/core/train_script.py), never pytest itself. Each rank reads its own shard of
the data (ResumableLoader shards by rank) and saves its final weights; gradient all-reduce must
keep the two ranks' networks and EMAs bit-identical.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from polydiff.core.io import read_json
from polydiff.core.train import load_checkpoint

SCRIPT = Path(__file__).with_name("train_script.py")


def test_ddp_two_cpu_processes_end_with_identical_weights(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(SCRIPT), str(run_dir), "--devices", "2", "--strategy", "ddp"]
    cmd += ["--max-steps", "12", "--checkpoint-every", "10"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    final = run_dir / "final"
    w0, w1 = load_file(final / "rank0.safetensors"), load_file(final / "rank1.safetensors")
    assert w0.keys() == w1.keys()
    for name in w0:
        assert torch.equal(w0[name], w1[name]), name
    s0, s1 = read_json(final / "rank0.json"), read_json(final / "rank1.json")
    assert s0["final_step"] == s1["final_step"] == 12
    # The ranks trained on different shards (so equality comes from the gradient all-reduce).
    assert s0["data_sum"] != s1["data_sum"]

    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 12
    # Both ranks' RNG streams are in the checkpoint, for an exact DDP resume.
    assert len(ckpt["polydiff"]["rng_states"]) == 2
    assert torch.equal(ckpt["state_dict"]["net.0.weight"], w0["net.0.weight"])
