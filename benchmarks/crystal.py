"""Crystal structure prediction on perov-5 and carbon-24: CrysBFN vs DiffCSP vs random coordinates.

Per dataset, the models are the shipped checkpoints `crysbfn-<dataset>` and `diffcsp-<dataset>`
(or the model folders given), both trained on the dataset's `val` split with the same network and
recipe (their READMEs hold the commands); every number here is on the first `--limit` rows
(carbon-24: `--carbon-limit`) of the dataset's `test` split, which neither model saw and nothing
was tuned on (settings were chosen on held-out perov-5 `val` rows). One structure per test
composition; StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3) match rate with its 95 % Wilson
interval, RMSE over the matches with its 95 % normal interval, network calls and wall seconds per
structure (one thread), for CrysBFN at N = 10 (its training N) and N = 50 steps, DiffCSP at
T = 1000 predictor-corrector steps (2000 calls) and the true lattices with uniformly random
fractional coordinates (the protocol's baseline).

Goals, per dataset: CrysBFN (N = 10) above the random-coordinate baseline (its match rate, and
the lower end of its 95 % interval); CrysBFN (N = 10) inside or above the 95 % interval of
DiffCSP, which makes at least 10x its network calls.
Run: `nox -s bench -- crystal` (or `OMP_NUM_THREADS=1 python benchmarks/run.py crystal
[--data <folder with perov_5/ and carbon_24/>] [--datasets perov_5 carbon_24] [--reuse]`);
`--reuse` takes a dataset's rows from the previous crystal.json where it scored the same models
on the same rows with the same seed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "crystal"
MACHINE = "2 shared CPU cores, no GPU"
DATASETS = ("perov_5", "carbon_24")
TITLES = {"perov_5": "perov-5", "carbon_24": "carbon-24"}
RANDOM = "random coordinates, true lattice"
# published one-sample CSP numbers on the full train split (DiffCSP, Jiao et al. 2023, Table 1)
# and the random-coordinate match rate of the loose metric (the project's reference notes)
PUBLISHED = {
    "perov_5": "DiffCSP 52.02 % / RMSE 0.0760; random coordinates with the true lattice 46 %",
    "carbon_24": "DiffCSP 17.54 % / RMSE 0.2759; random coordinates with the true lattice 55 %",
}


def _score(
    name: str, predicted, target, calls: int | None, seconds: float | None, weights=None
) -> dict:
    from polydiff.crystal.metrics import cell_volume_error, csp_match

    score = csp_match(predicted, target)
    n = len(target)
    return {
        "method": name,
        "weights": weights,
        "volume": cell_volume_error(predicted, target),
        "match_rate": score.match_rate,
        "match_rate_ci95": list(score.match_rate_ci),
        "rmse": score.rmse,
        "rmse_ci95": list(score.rmse_ci),
        "matched": sum(r is not None for r in score.rms),
        "n": n,
        "network_calls_per_structure": calls,
        "seconds_per_structure": None if seconds is None else seconds / n,
    }


def _timed_predict(model, target, seed: int, **options) -> tuple[Any, float]:
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    predicted = model.predict(target, generator=generator, batch_size=256, **options)
    return predicted, time.perf_counter() - start


def weights_digest(model: str) -> str:
    """The first 16 hex digits of the SHA-256 of a model's weights (a folder or a shipped name):
    rows are reused only for the same weights, not the same name."""
    from polydiff.crystal.workflow import SHIPPED

    folder = Path(model) if Path(model).is_dir() else SHIPPED / model
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()[:16]


def previous_section(out: Path, dataset: str) -> dict | None:
    """The dataset's part of the previous crystal.json, with its seed."""
    path = out / "crystal.json"
    if not path.is_file():
        return None
    old = json.loads(path.read_text())
    section = old.get("sections", {}).get(dataset)
    return None if section is None else {**section, "seed": old["seed"]}


def crysbfn_runs(sampler: str, steps: list[int], candidates: int) -> list[tuple[int, str, int]]:
    """(N, sampler, best-of-k) of the CrysBFN rows."""
    runs = [(10, "end_back", 1), (10, "bayes", 1)]
    runs += [(n, sampler, 1) for n in steps if n != 10]
    return [*runs, (10, sampler, candidates)]


def csp_rows(args, dataset: str, models: dict[str, str], limit: int) -> list[dict]:
    """The rows of one dataset; with ``--reuse``, a model row of the previous crystal.json is
    taken where it scored the same weights on the same rows with the same seed (its
    ``scored_by`` says which run)."""
    from polydiff.crystal.data import read_csv
    from polydiff.crystal.metrics import random_coordinates
    from polydiff.crystal.workflow import load_model

    old = previous_section(args.out, dataset) if args.reuse else None
    found = {}
    if old is not None and (old["limit"], old["seed"]) == (limit, args.seed):
        found = {(r["method"], r.get("weights")): r for r in old["rows"]}
        found = {k: {"scored_by": old.get("scored_by"), **r} for k, r in found.items()}
    test = read_csv(args.data / dataset / "test.csv", limit=limit)
    rows = []
    bfn, bfn_weights = load_model(models["crysbfn"]), weights_digest(models["crysbfn"])
    for n, sampler, k in crysbfn_runs(bfn.config.sampler, args.steps, args.candidates):
        name = crysbfn_row(n, sampler, k)
        row = found.get((name, bfn_weights))
        if row is None:
            predicted, seconds = _timed_predict(
                bfn, test, args.seed, steps=n, sampler=sampler, candidates=k
            )
            row = _score(name, predicted, test, k * n, seconds, bfn_weights)
        rows.append(row)
    diff, diff_weights = load_model(models["diffcsp"]), weights_digest(models["diffcsp"])
    name = f"DiffCSP, T = {diff.config.steps} PC"
    row = found.get((name, diff_weights))
    if row is None:
        predicted, seconds = _timed_predict(diff, test, args.seed)
        calls = diff.config.steps * (1 + diff.config.corrector_steps)
        row = _score(name, predicted, test, calls, seconds, diff_weights)
    rows.append(row)
    baseline = random_coordinates(test, torch.Generator().manual_seed(args.seed))
    return [*rows, _score(RANDOM, baseline, test, 0, None)]  # cheap: always scored


def crysbfn_row(n: int, sampler: str, candidates: int) -> str:
    name = f"CrysBFN, N = {n}, {sampler}"
    return name if candidates == 1 else f"{name}, best of {candidates} by min distance"


def goals(rows: list[dict], sampler: str, prefix: str = "") -> dict[str, bool]:
    bfn = next(r for r in rows if r["method"] == crysbfn_row(10, sampler, 1))
    diff = next(r for r in rows if r["method"].startswith("DiffCSP"))
    rand = next(r for r in rows if r["method"] == RANDOM)
    return {
        f"{prefix}crysbfn_n10_above_random_coordinates": bfn["match_rate"] > rand["match_rate"],
        f"{prefix}crysbfn_n10_ci_above_random_coordinates": (
            bfn["match_rate_ci95"][0] > rand["match_rate"]
        ),
        f"{prefix}crysbfn_n10_within_diffcsp_ci_at_10x_fewer_calls": (
            bfn["match_rate"] >= diff["match_rate_ci95"][0]
            and diff["network_calls_per_structure"] >= 10 * bfn["network_calls_per_structure"]
        ),
    }


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _interval(value, ci, fmt) -> str:
    """``value (lo–hi)``, or a dash where there is no value (no matches: no RMSE)."""
    if value is None or value != value:
        return "–"
    return f"{fmt(value)} ({fmt(ci[0])}–{fmt(ci[1])})"


def _volume(r: dict) -> str:
    """``error % | predicted / true Å^3 per atom``, dashes for rows scored before the column."""
    v = r.get("volume")
    if v is None:
        return "– | –"
    error = _pct(v["relative_error"])
    return f"{error} | {v['predicted_per_atom']:.1f} / {v['true_per_atom']:.1f}"


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| method | network calls / structure | match rate % (95 % CI) | RMSE (95 % CI) "
        "| cell volume error % | Å^3 / atom (predicted / true) | s / structure |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        secs = "–" if r["seconds_per_structure"] is None else f"{r['seconds_per_structure']:.4f}"
        lines.append(
            f"| {r['method']} | {r['network_calls_per_structure']} "
            f"| {_interval(r['match_rate'], r['match_rate_ci95'], _pct)} "
            f"| {_interval(r['rmse'], r['rmse_ci95'], lambda x: f'{x:.3f}')} "
            f"| {_volume(r)} | {secs} |"
        )
    return lines


def section_markdown(dataset: str, section: dict, command: str, sampler: str) -> list[str]:
    title = TITLES[dataset]
    models = section["models"]
    runs: dict[str, list[str]] = {}
    for r in section["rows"]:
        if r.get("scored_by", command) != command:
            runs.setdefault(r["scored_by"], []).append(r["method"])
    reused = [
        f"Reused (same weights, rows and seed) from the run of `{run}`: "
        + ", ".join(f"`{m}`" for m in methods)
        + "."
        for run, methods in runs.items()
    ]
    reused = [*reused, ""] if reused else []
    return [
        f"## {title}",
        "",
        f"Models: `{models['crysbfn']}` and `{models['diffcsp']}`, trained on {title} "
        f"`{section['split']['train']}` ({TRAIN_NOTES[dataset]}) with the same CSPNet and "
        "optimiser (see their READMEs under `packages/crystal/src/polydiff/crystal/checkpoints/`). "
        f"Scored on `{section['split']['test']}` (the first {section['limit']} rows of "
        f"{title} `test`, reporting only). Published (full train split, thousands of "
        f"epochs): {PUBLISHED[dataset]}.",
        "",
        *table(section["rows"]),
        "",
        *reused,
        *([DIAGNOSES[dataset], ""] if dataset in DIAGNOSES else []),
        f"Goals (on the row `{crysbfn_row(10, sampler, 1)}`):",
        *[f"- `{k}`: {'met' if v else 'not met'}" for k, v in section["goals"].items()],
        "",
    ]


def markdown(result: dict) -> str:
    sections = []
    for dataset, section in result["sections"].items():
        sections += section_markdown(dataset, section, result["command"], result["sampler"])
    return "\n".join(
        [
            "# Crystal structure prediction (perov-5, carbon-24)",
            "",
            f"Command: `{result['command']}` (seed {result['seed']}; {result['machine']}; "
            f"{result['torch_threads']} torch thread; Python {result['python']}).",
            "",
            "One prediction per composition (the best-of-4 row draws 4 and keeps the one whose "
            "closest atoms are farthest apart, 4x the calls); StructureMatcher(stol=0.5, "
            "angle_tol=10, ltol=0.3); RMSE normalised by (V/n)^(1/3) over the matches; 95 % "
            "Wilson intervals for the match rate, normal intervals for the RMSE. `end_back` is "
            "CrysBFN's released sampler, `bayes` BFN's Bayesian-update sampler (the default: "
            f"`{result['sampler']}`, chosen with the training length on the perov-5 validation "
            "rows that `crysbfn-perov5` did not train on: docs/benchmarks/crystal-tuning.md; "
            "the cell volume error is the mean |V_pred - V_true| / V_true, which "
            "StructureMatcher's volume rescaling does not see). CrysBFN at N = 50 samples the "
            "N = 10 model with the 50-step schedule (its entropy is the same linear function "
            "of t). Seconds are wall time on a shared machine (noisy; ratios are more "
            "telling). The train splits are not available offline: every model here trained "
            "on its dataset's `val` split.",
            "",
            *sections,
            "Generation: docs/benchmarks/crystal-gen.md (`benchmarks/crystal_gen.py`).",
            "",
        ]
    )


# what the rows say, per dataset (written by hand from the numbers of the committed run)
DIAGNOSES = {
    "perov_5": "CrysBFN at N = 10 with end-back (the goal row) stays below random coordinates "
    "on these 200 test rows (29.5 vs 33.5 %) although the same model scored 40.2 % against "
    "35.6 % on the 500 held-out `val` rows it was chosen on: every interval here spans about "
    "13 points, so 200 rows cannot separate them. N = 50 (36.5 %) and the Bayesian-update "
    "sampler (34.5 %) are above the baseline but not the goal row, and not chosen on "
    "validation. At equal training CrysBFN at 10 calls is level with DiffCSP at 2000 (29.5 vs "
    "29.0 %), about 100x faster per structure; both predict cells about 14 % off in volume, "
    "which StructureMatcher's rescaling hides.",
    "carbon_24": "Every carbon-24 model row is far below random coordinates: one element and "
    "a loose StructureMatcher make the true lattice with any coordinates a likely match, and "
    "38 epochs of training give lattices and frameworks that rarely match (the published "
    "DiffCSP, trained thousands of epochs, also scores far below this baseline). CrysBFN at 10 "
    "calls is level with DiffCSP at 2000 (200x fewer), over 200x faster per structure. The "
    "cell volume column shows what the short runs miss: CrysBFN's cells hold 1.0 Å^3 per atom "
    "against 6.3 in the true ones (83 % volume error), DiffCSP's 4.4 (58 %).",
}

# the training data of the shipped models
TRAIN_SPLITS = {"perov_5": "val.csv[:3287]", "carbon_24": "val.csv"}
TRAIN_NOTES = {
    "perov_5": "3287 crystals, both models for 2000 steps of 256 (156 epochs; the length "
    "chosen for CrysBFN on `val.csv[3287:3787]`)",
    "carbon_24": "2032 crystals, 6–24 atoms; the shortest run of the recipe that fitted the "
    "CPU budget",
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/run.py crystal", description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of the splits")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--crysbfn", default="crysbfn-perov5", help="perov-5 model")
    parser.add_argument("--diffcsp", default="diffcsp-perov5", help="perov-5 model")
    parser.add_argument("--carbon-crysbfn", default="crysbfn-carbon24", help="carbon-24 model")
    parser.add_argument("--carbon-diffcsp", default="diffcsp-carbon24", help="carbon-24 model")
    parser.add_argument("--limit", type=int, default=200, help="first perov-5 test rows")
    parser.add_argument("--carbon-limit", type=int, default=100, help="first carbon-24 rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 50], help="CrysBFN N")
    parser.add_argument("--candidates", type=int, default=4, help="k of the best-of-k row")
    parser.add_argument("--reuse", action="store_true", help="reuse matching previous rows")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    args = parser.parse_args(argv)
    if 10 not in args.steps:
        parser.error("--steps must include 10 (the goals compare CrysBFN at N = 10)")
    from polydiff.core.io import atomic_write_json, atomic_write_text, nan_to_none
    from polydiff.crystal.workflow import load_model

    torch.set_num_threads(1)
    start = time.perf_counter()
    setups = {
        "perov_5": ({"crysbfn": args.crysbfn, "diffcsp": args.diffcsp}, args.limit),
        "carbon_24": (
            {"crysbfn": args.carbon_crysbfn, "diffcsp": args.carbon_diffcsp},
            args.carbon_limit,
        ),
    }
    sections, all_goals = {}, {}
    command = "python benchmarks/run.py crystal " + " ".join(
        a if not Path(a).is_absolute() else "<path>" for a in argv
    )
    command = command.strip()
    sampler = load_model(setups[args.datasets[0]][0]["crysbfn"]).config.sampler
    for dataset in DATASETS if args.reuse else ():  # sections not rerun: kept as they were
        old = previous_section(args.out, dataset)
        if dataset not in args.datasets and old is not None:
            rows = [{"scored_by": old.get("scored_by"), **r} for r in old["rows"]]
            keep = ("limit", "split", "models", "goals")
            sections[dataset] = {**{k: old[k] for k in keep}, "rows": rows}
            all_goals |= old["goals"]
    for dataset in args.datasets:
        models, limit = setups[dataset]
        rows = [{"scored_by": command, **r} for r in csp_rows(args, dataset, models, limit)]
        section_goals = goals(rows, sampler, "" if dataset == "perov_5" else "carbon24_")
        sections[dataset] = {
            "limit": limit,
            "split": {"train": TRAIN_SPLITS[dataset], "test": f"test.csv[:{limit}]"},
            "models": models,
            "rows": rows,
            "goals": section_goals,
        }
        all_goals |= section_goals
    sections = {d: sections[d] for d in DATASETS if d in sections}
    result = {
        "command": command,
        "seed": args.seed,
        "sampler": sampler,
        "machine": MACHINE,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "sections": sections,
        "goals": all_goals,
        "seconds_total": time.perf_counter() - start,
    }
    if "perov_5" in sections:  # perov-5's rows also at the top level, as before carbon-24
        perov = sections["perov_5"]
        result |= {"limit": perov["limit"], "models": perov["models"], "perov_5": perov["rows"]}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "crystal.json", nan_to_none(result))
    atomic_write_text(args.out / "crystal.md", markdown(result))
    print(json.dumps(result["goals"]), f"{result['seconds_total']:.0f} s")
    return 0
