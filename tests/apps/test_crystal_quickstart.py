"""The README's crystal quick start (`polydiff crystal train my_crystals.csv`, `predict
compositions=...`, `evaluate ... reference=...`) at reduced size, on perov-5 rows from
../shared/data (issue 14 item 6: defaults that work, said in numbers on the console; a result
below its baseline says so). The verbs run in-process through `polydiff.apps.cli.dispatch`."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from polydiff.apps.cli import dispatch

# the project's data folder sits beside the clone (../shared), in CI too
PEROV = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "crystal" / "perov_5"
SMALL = ("model.hidden=64", "model.layers=2", "train.batch_size=64", "train.progress_bar=false")


def _rows(source: Path, out: Path, n: int) -> Path:
    """The first n rows of a CDVAE CSV (its header kept)."""
    csv.field_size_limit(1 << 30)
    with source.open(newline="") as f:
        rows = list(csv.reader(f))[: n + 1]
    with out.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return out


def _final_loss(run: Path) -> float:
    line = re.search(r"final loss ([0-9.]+)", (run / "polydiff.log").read_text())
    assert line, "train prints its final loss"
    return float(line[1])


def test_the_readme_quick_start_trains_predicts_and_says_where_it_stands(tmp_path: Path):
    """Train 150 steps on 300 perov-5 val crystals (half the default width), predict the
    structures of 40 test compositions, evaluate them against the true ones: the training
    loss of the exported model must be under 60 % of the untrained network's (measured: 57.6
    vs 131.5 at this size), and evaluate prints the match rate beside the random-coordinate
    baseline and warns when it is below it (it is at this size: 0 % vs 35 %, validity 22 %; the
    shipped models are below it too: docs/benchmarks/crystal.md)."""
    assert PEROV.is_dir(), f"the shared benchmark splits are missing: {PEROV}"
    mine = _rows(PEROV / "val.csv", tmp_path / "my_crystals.csv", 300)
    test = _rows(PEROV / "test.csv", tmp_path / "test.csv", 40)
    runs = tmp_path / "runs"
    for name, steps in (("csp", 150), ("untrained", 1)):
        assert dispatch(["crystal", "train", str(mine), f"train.steps={steps}", *SMALL,
                         f"hydra.run.dir={runs / name}"]) == 0  # fmt: skip
    trained, untrained = _final_loss(runs / "csp"), _final_loss(runs / "untrained")
    assert trained < 0.6 * untrained, (trained, untrained)
    assert dispatch(["crystal", "predict", str(runs / "csp/model"), f"compositions={test}",
                     f"hydra.run.dir={runs / 'predict'}"]) == 0  # fmt: skip
    assert dispatch(["crystal", "evaluate", str(runs / "predict/structures"),
                     f"reference={test}", f"hydra.run.dir={runs / 'evaluate'}"]) == 0  # fmt: skip
    metrics = json.loads((runs / "evaluate/metrics.json").read_text())
    assert metrics["n"] == 40
    log = (runs / "evaluate/polydiff.log").read_text()
    assert re.search(r"match rate [0-9.]+ % .*random-coordinate baseline [0-9.]+ %", log)
    below = metrics["match_rate"] < metrics["baseline_match_rate"]
    assert below == ("below the random-coordinate baseline" in log)
