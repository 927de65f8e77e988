"""Ab-initio crystal generation on perov-5: CrysBFN's two samplers vs real crystals.

The model is the shipped `crysbfn-perov5-gen` (or the folder given), trained on perov-5's `val`
split (its README holds the command); the reference set is the first `--limit` rows of
perov-5's `test` split. `--n` crystals per sampler (atom counts drawn from the training set) at
N = 10: `end_back` (CrysBFN's released sampler) and `bayes` (BFN's Bayesian-update sampler), and
as the ceiling `--n` real crystals (perov-5 `val` rows, the model's training data) in their
place. Metrics of CDVAE (polydiff.crystal.metrics.generation_metrics): structural validity,
SMACT 2.2.1 compositional validity, COV-R / COV-P with CrystalNN + Magpie fingerprints at the
perovskite cutoffs (0.2, 4), Wasserstein distances of density and of the number of elements
over the valid crystals. Writes docs/benchmarks/crystal-gen.{md,json}.
Run: `OMP_NUM_THREADS=1 python benchmarks/run.py crystal_gen [--data <folder with perov_5/>]
[--limit 200] [--n 200]`.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "crystal"
MACHINE = "2 shared CPU cores, no GPU"
METRICS = ("structural_validity", "compositional_validity", "validity", "cov_recall")


def run(args) -> list[dict]:
    from polydiff.crystal.data import read_csv
    from polydiff.crystal.metrics import COV_CUTOFFS, fingerprints, generation_metrics
    from polydiff.crystal.workflow import load_model

    test = read_csv(args.data / "perov_5" / "test.csv", limit=args.limit)
    reference = fingerprints(test)
    cutoffs = COV_CUTOFFS["perovskite"]
    model = load_model(args.model)
    rows = []
    for sampler in ("end_back", "bayes"):
        generator = torch.Generator().manual_seed(args.seed)
        start = time.perf_counter()
        generated = model.generate(args.n, generator=generator, sampler=sampler)
        seconds = time.perf_counter() - start
        metrics = generation_metrics(generated, test, cutoffs, reference)
        rows.append(
            {
                "method": f"CrysBFN, N = {model.config.steps}, {sampler}",
                "network_calls_per_structure": model.config.steps,
                "seconds_per_structure": seconds / args.n,
                **metrics,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    real = read_csv(args.data / "perov_5" / "val.csv", limit=args.n)
    metrics = generation_metrics(real, test, cutoffs, reference)
    rows.append(
        {
            "method": "real crystals (val rows)",
            "network_calls_per_structure": 0,
            "seconds_per_structure": None,
            **metrics,
        }
    )
    return rows


def markdown(result: dict) -> str:
    table = [
        "| method | calls / structure | struct. valid % | comp. valid % | valid % | COV-R % "
        "| COV-P % | W density (g/cm^3) | W #elements | s / structure |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        secs = "–" if r["seconds_per_structure"] is None else f"{r['seconds_per_structure']:.4f}"
        table.append(
            f"| {r['method']} | {r['network_calls_per_structure']} | "
            + " | ".join(f"{100 * r[k]:.1f}" for k in METRICS)
            + f" | {100 * r['cov_precision']:.1f} | {r['wdist_density']:.3f} "
            f"| {r['wdist_num_elements']:.3f} | {secs} |"
        )
    return "\n".join(
        [
            "# Ab-initio crystal generation (perov-5)",
            "",
            f"Command: `{result['command']}` (seed {result['seed']}; {result['machine']}; "
            f"1 torch thread; Python {result['python']}).",
            "",
            f"Model `{result['model']}`, trained on perov-5 `val` (3787 crystals; the train "
            f"split is not available offline). {result['n']} crystals per row, compared with "
            f"the first {result['limit']} rows of perov-5 `test` (reporting only; nothing was "
            "tuned on them) by CDVAE's metrics (`polydiff.crystal.metrics."
            "generation_metrics`): structural validity (atoms >= 0.5 Å apart, volume >= 0.1 "
            "Å^3), SMACT 2.2.1 compositional validity (the version CDVAE and DiffCSP used), "
            "COV-R / COV-P with CrystalNN + Magpie fingerprints at the perovskite cutoffs "
            "(0.2, 4; CDVAE scales the composition features by fixed constants of its "
            "training data, here each by the spread over the elements of the property it is "
            "a statistic of: `composition_scale`), Wasserstein distances "
            "of density and number of elements over the valid crystals. The last row puts "
            "real perov-5 crystals (`val` rows, the model's training data) in place of the "
            "samples: the ceiling of these metrics on this reference. 10k samples in the "
            "papers; CDVAE-protocol numbers from fewer samples are noisier (COV-R especially "
            "grows with the number of samples).",
            "",
            *table,
            "",
        ]
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/run.py crystal_gen", description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with perov_5/")
    parser.add_argument("--model", default="crysbfn-perov5-gen", help="shipped name or folder")
    parser.add_argument("--limit", type=int, default=200, help="first test rows as reference")
    parser.add_argument("--n", type=int, default=200, help="crystals per row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    args = parser.parse_args(argv)
    from polydiff.core.io import atomic_write_json, atomic_write_text, nan_to_none

    torch.set_num_threads(1)
    start = time.perf_counter()
    rows = run(args)
    command = "python benchmarks/run.py crystal_gen " + " ".join(
        a if not Path(a).is_absolute() else "<path>" for a in argv
    )
    result = {
        "command": command.strip(),
        "seed": args.seed,
        "limit": args.limit,
        "n": args.n,
        "model": args.model,
        "split": {"train": "perov_5/val.csv", "reference": f"perov_5/test.csv[:{args.limit}]"},
        "machine": MACHINE,
        "python": platform.python_version(),
        "rows": rows,
        "seconds_total": time.perf_counter() - start,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "crystal-gen.json", nan_to_none(result))
    atomic_write_text(args.out / "crystal-gen.md", markdown(result))
    print(f"{result['seconds_total']:.0f} s")
    return 0
