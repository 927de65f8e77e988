"""How still the held-out NELBO bound holds: the shipped MDLM's bound between seeds.

On the first 256 validation rows of the built-in Shakespeare corpus (validation data), the bound
`held_out_scores` reports is computed with 5 seeds of the time / masking draws at 1, 4 and
`HELD_OUT_TIME_SAMPLES` draws per sequence; reported: each bound, their standard deviation and
max - min in percent of the mean, the mean standard error the library prints, and seconds per
evaluation (one thread). Goal: the default draws move the bound by less than 1% (standard
deviation between seeds). Writes docs/benchmarks/text-nelbo.md and .json.
Run: `nox -s bench -- text_nelbo` (or `python benchmarks/run.py text_nelbo`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SEEDS = 5
ROWS = 256


def main(argv: list[str]) -> int:
    from polydiff.core.method import load_method
    from polydiff.text.evaluation import held_out_rows, held_out_scores
    from polydiff.text.losses import HELD_OUT_TIME_SAMPLES
    from polydiff.text.method import shipped_checkpoint

    torch.set_num_threads(1)
    method = load_method(shipped_checkpoint())
    rows = held_out_rows(method, "builtin:shakespeare", "validation", seed=0, max_rows=ROWS)
    results = {}
    for draws in (1, 4, HELD_OUT_TIME_SAMPLES):
        bounds, errors, start = [], [], time.perf_counter()
        for seed in range(SEEDS):
            generator = torch.Generator().manual_seed(seed)
            scores = held_out_scores(method, rows, n_time_samples=draws, generator=generator)
            bounds.append(scores["ppl_bound"])
            errors.append(scores["ppl_bound_se"])
        b = np.array(bounds)
        results[str(draws)] = {
            "bounds": bounds,
            "std_percent": float(100 * b.std(ddof=1) / b.mean()),
            "max_minus_min_percent": float(100 * (b.max() - b.min()) / b.mean()),
            "mean_standard_error": float(np.mean(errors)),
            "seconds_per_evaluation": (time.perf_counter() - start) / SEEDS,
        }
        print(draws, results[str(draws)], flush=True)
    default = results[str(HELD_OUT_TIME_SAMPLES)]
    report = {
        "command": "nox -s bench -- text_nelbo",
        "model": "shipped MDLM",
        "data": f"first {ROWS} validation rows of builtin:shakespeare (validation split)",
        "seeds": SEEDS,
        "default_draws": HELD_OUT_TIME_SAMPLES,
        "draws": results,
        "goals": {"default_draws_move_the_bound_less_than_1_percent": default["std_percent"] < 1},
    }
    out = ROOT / "docs" / "benchmarks"
    (out / "text-nelbo.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# The held-out NELBO bound between seeds (shipped MDLM)",
        "",
        f"Command: `{report['command']}`. {report['data']}, {SEEDS} seeds of the draws, one "
        "thread on this shared CPU.",
        "",
        "| draws per sequence | bounds | std (%) | max - min (%) | standard error | s / eval |",
        "|---|---|---|---|---|---|",
    ]
    for draws, r in results.items():
        shown = ", ".join(f"{x:.3f}" for x in r["bounds"])
        lines.append(
            f"| {draws} | {shown} | {r['std_percent']:.2f} | {r['max_minus_min_percent']:.2f} | "
            f"{r['mean_standard_error']:.3f} | {r['seconds_per_evaluation']:.1f} |"
        )
    lines += ["", "Goals: " + ", ".join(f"{k}: {v}" for k, v in report["goals"].items()), ""]
    (out / "text-nelbo.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0
