"""The README's speech quick start (`polydiff speech data`, then `polydiff speech train
data_root=... method=sgmse`) at reduced size gives a model that beats its noisy input
(issue 14 item 6: defaults that work, said in numbers on the console)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

POLYDIFF = Path(sys.executable).with_name("polydiff")
MARGIN = {"pesq": 0.2, "estoi": 0.02, "si_sdr": 2.0}  # dB for SI-SDR


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    out = subprocess.run(
        [str(POLYDIFF), "speech", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out


def test_the_readme_train_quick_start_beats_the_noisy_input(tmp_path: Path):
    """The README's commands with the defaults but fewer clips and steps: 16 kHz data, SGMSE+
    with `train.init=auto` starting from the shipped SGMSE+ weights. The run's own validation
    report (the clip it enhances after training with the model's default sampler) must beat
    the noisy clip on PESQ, ESTOI and SI-SDR by a margin; from random weights it would not
    (tests/apps/test_speech_cli.py: two steps of a fresh network lose on every metric)."""
    run(tmp_path, "data", "data.train=4", "data.valid=1", "data.test=0",
        "data.babble_talkers=2", "hydra.run.dir=runs/sp/data")  # fmt: skip
    out = run(tmp_path, "train", "data_root=runs/sp/data/corpus", "method=sgmse",
              "train.steps=2", "report_files=1", "hydra.run.dir=runs/sp/sgmse")  # fmt: skip
    assert "from the weights of the shipped sgmse_micro_8k (train.init=auto)" in out.stdout
    assert "warning" not in out.stderr
    metrics = json.loads((tmp_path / "runs/sp/sgmse/metrics.json").read_text())
    report = metrics["validation"]
    assert report["files"] == 1 and report["worse"] == []
    for key, margin in MARGIN.items():
        assert report["enhanced"][key] > report["noisy"][key] + margin, (key, report)
    assert "validation (1 files, noisy -> enhanced): pesq" in out.stdout
