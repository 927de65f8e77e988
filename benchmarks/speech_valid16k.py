"""polydiff.speech at 16 kHz on validation clips: where the default loses to the noisy input,
and whether another model (e.g. a fine-tuned checkpoint) is better in every condition group.

Validation data only: clips of the built-in corpus's valid/ split at 16 kHz (rebuilt from their
seeds, `polydiff.speech.evaluation.builtin_clips`), never test/. Every model runs at N = 0 (the
predictive network alone, the shipped default setting).
1. Brown noise at 5 and 10 dB SNR (--brown-clips each, clip indices 0 ..): ESTOI of the noisy
   input and of each model, the paired difference with its 95% CI and the number of clips made
   worse; where a loss comes from: per band, the linear-domain SNR against the clean clip (10
   log10 sum|C|^2 / sum|E - C|^2 over the band's STFT bins) of the output and of the noisy
   input and the output's level against the clean; and two band swaps (the output below 250 Hz
   with the noisy input above it, and the reverse).
2. Every noise type x SNR {0, 5, 10} dB (--clips each, clip indices from 1000, one range per
   condition): PESQ (wide-band), ESTOI and SI-SDR of the noisy input and each model, and per
   later model the paired difference against the first (the reference), pooled and per noise type.
Goals per later model (booleans in the JSON): better than the reference pooled on all three
metrics; not worse than the reference in any noise-type group (paired mean >= 0 on every
metric); above the noisy input on all three metrics in every validation condition. A new
default ships only if all hold.
Writes docs/benchmarks/speech-valid16k.md and .json (--name picks another stem).
Run: `nox -s bench -- speech_valid16k [--models DIR ...]` (default: the shipped 16 kHz StoRM).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("pesq", "estoi", "si_sdr")
SNRS = (0.0, 5.0, 10.0)
BROWN_SNRS = (5.0, 10.0)
BANDS = ((0, 250), (250, 500), (500, 1000), (1000, 2000), (2000, 4000), (4000, 8000))
SPLIT_HZ = 250.0  # the band swaps' split: brown noise lies below it at these SNRs
GRID_START = 1000  # the grid's clip indices start here, past the brown clips'


def stft(x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies, complex STFT) with a 32 ms Hann window, half overlap (invertible)."""
    from scipy.signal import stft as scipy_stft

    f, _, spec = scipy_stft(x, sr, nperseg=sr // 32)
    return f, spec


def swap(estimate: np.ndarray, noisy: np.ndarray, sr: int, below: bool) -> np.ndarray:
    """The estimate's STFT below SPLIT_HZ (``below``) or above it, the noisy input's elsewhere."""
    from scipy.signal import istft

    f, e = stft(estimate, sr)
    _, y = stft(noisy, sr)
    keep = (f < SPLIT_HZ) if below else (f >= SPLIT_HZ)
    return istft(np.where(keep[:, None], e, y), sr, nperseg=sr // 32)[1][: len(estimate)]


def band_stats(clean: np.ndarray, signal: np.ndarray, sr: int) -> dict[str, float]:
    """Per band: 'snr <lo>' (dB, linear-domain SNR of ``signal`` against ``clean``) and
    'level <lo>' (dB, its energy over the clean's)."""
    f, c = stft(clean, sr)
    _, s = stft(signal, sr)
    out = {}
    for lo, hi in BANDS:
        b = (f >= lo) & (f < hi)
        ref, err = np.sum(np.abs(c[b]) ** 2), np.sum(np.abs(s[b] - c[b]) ** 2)
        out[f"snr {lo}"] = float(10 * np.log10(ref / err))
        out[f"level {lo}"] = float(10 * np.log10(np.sum(np.abs(s[b]) ** 2) / ref))
    return out


def brown_rows(clips: list, estimates: dict[str, list]) -> dict[str, list[dict]]:
    """Per row (noisy, each model): per clip ESTOI, band statistics and (models) the swaps."""
    from polydiff.speech.metrics import estoi

    out: dict[str, list[dict]] = {"noisy": []}
    for c in clips:
        out["noisy"].append({"estoi": estoi(c.clean, c.noisy, c.sample_rate),
                             **band_stats(c.clean, c.noisy, c.sample_rate)})  # fmt: skip
    for name, ests in estimates.items():
        out[name] = []
        for c, e in zip(clips, ests, strict=True):
            sr = c.sample_rate
            row = {"estoi": estoi(c.clean, e, sr), **band_stats(c.clean, e, sr)}
            row["estoi, output < 250 Hz only"] = estoi(c.clean, swap(e, c.noisy, sr, True), sr)
            row["estoi, output >= 250 Hz only"] = estoi(c.clean, swap(e, c.noisy, sr, False), sr)
            out[name].append(row)
    return out


def paired(a: list[dict], b: list[dict], key: str, b_key: str | None = None) -> dict[str, Any]:
    """Mean, 95% CI and n of the per-clip difference a[key] - b[b_key or key], and how many
    clips have it negative."""
    from polydiff.speech.metrics import mean_ci

    diffs = [x[key] - y[b_key or key] for x, y in zip(a, b, strict=True)]
    mean, ci, n = mean_ci(diffs)
    return {"mean": mean, "ci": ci, "n": n, "worse": int(sum(d < 0 for d in diffs))}


def means(rows: list[dict]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "file"}


def brown_section(models: dict, n: int, seed: int, log) -> dict[str, Any]:
    """Part 1 at each BROWN_SNRS: per row the means, per model the paired ESTOI changes."""
    from polydiff.speech.evaluation import builtin_clips, run_method

    out = {}
    for snr in BROWN_SNRS:
        clips = builtin_clips(n, 16000, seed=seed, split="valid", snr_range=(snr, snr),
                              noise_kinds=("brown",))  # fmt: skip
        ests = {name: run_method(m, clips, seed=seed, N=0)[0] for name, m in models.items()}
        rows = brown_rows(clips, ests)
        keys = ("estoi", "estoi, output < 250 Hz only", "estoi, output >= 250 Hz only")
        out[f"brown, {snr:g} dB"] = {
            "means": {name: means(r) for name, r in rows.items()},
            "estoi_vs_noisy": {
                name: {k: paired(rows[name], rows["noisy"], k, "estoi") for k in keys}
                for name in models
            },
        }
        log(f"  brown {snr:g} dB done")
    return out


def grid_section(models: dict, n: int, seed: int, log) -> tuple[dict, dict]:
    """Part 2: ({condition: {row: means}}, {model: {"pooled" | kind: paired vs the first}})."""
    from polydiff.speech.data.noise import NOISE_KINDS
    from polydiff.speech.evaluation import builtin_clips, run_method, score_set

    names, first = list(models), next(iter(models))
    table, per_file = {}, {name: {} for name in names}
    for k, (kind, snr) in enumerate((kd, s) for kd in NOISE_KINDS for s in SNRS):
        clips = builtin_clips(n, 16000, seed=seed, split="valid", start=GRID_START + k * n,
                              snr_range=(snr, snr), noise_kinds=(kind,))  # fmt: skip
        cond = f"{kind}, {snr:g} dB"
        rows = {"noisy": score_set(clips, [c.noisy for c in clips])}
        for name, m in models.items():
            rows[name] = score_set(clips, run_method(m, clips, seed=seed, N=0)[0])
            per_file[name].setdefault(kind, []).extend(rows[name])
        table[cond] = {name: {m: means(r)[m] for m in METRICS} for name, r in rows.items()}
        log(f"  {cond}: " + ", ".join(f"{r} {v['estoi']:.3f}" for r, v in table[cond].items()))
    diffs = {}
    for name in names[1:]:
        pooled = [[row for rows in per_file[n].values() for row in rows] for n in (name, first)]
        groups = {"pooled": tuple(pooled)}
        groups.update({kind: (per_file[name][kind], per_file[first][kind]) for kind in NOISE_KINDS})
        diffs[name] = {g: {m: paired(a, b, m) for m in METRICS} for g, (a, b) in groups.items()}
    return table, diffs


def goals(table: dict, diffs: dict) -> dict[str, bool]:
    out = {}
    for name, groups in diffs.items():
        out[f"{name}: better than the reference pooled (all three)"] = all(
            groups["pooled"][m]["mean"] > 0 for m in METRICS
        )
        out[f"{name}: not worse than the reference in any noise-type group"] = all(
            groups[g][m]["mean"] >= 0 for g in groups if g != "pooled" for m in METRICS
        )
    for name in next(iter(table.values())):
        if name != "noisy":
            out[f"{name}: above noisy on all three in every validation condition"] = all(
                rows[name][m] > rows["noisy"][m] for rows in table.values() for m in METRICS
            )
    return out


def fmt_diff(d: dict) -> str:
    ci = "" if d["ci"] is None or not np.isfinite(d["ci"]) else f" ± {d['ci']:.2g}"
    return f"{d['mean']:+.3g}{ci} ({d['worse']}/{d['n']} worse)"


def markdown(doc: dict) -> str:
    names = list(doc["models"])
    lines = ["# Speech at 16 kHz on validation clips: the brown-noise ESTOI loss, and model choice",
             "", f"Command: `{doc['command']}` (seed {doc['seed']}). Machine: {doc['machine']}. "
             f"Total wall time {doc['seconds'] / 60:.1f} min. Models (N = 0): "
             + ", ".join(f"`{k}` ({v})" for k, v in doc["models"].items())
             + f". Reference: `{names[0]}`.", "",
             "Validation data only (the built-in corpus's valid/ split at 16 kHz; test/ is never "
             "read here).", "", doc.get("notes", ""), ""]  # fmt: skip
    lines += [f"## 1. Brown noise at high SNR ({doc['sizes']['brown_clips']} clips per SNR)", ""]
    for cond, sec in doc["brown"].items():
        lines += [f"### {cond}", "", "| row | ESTOI | ESTOI - noisy (paired) | ESTOI, output "
                  "< 250 Hz only - noisy | ESTOI, output >= 250 Hz only - noisy |",
                  "|---|---|---|---|---|"]  # fmt: skip
        lines.append(f"| noisy | {sec['means']['noisy']['estoi']:.4f} | - | - | - |")
        for name in names:
            d = sec["estoi_vs_noisy"][name]
            cells = " | ".join(fmt_diff(d[k]) for k in d)
            lines.append(f"| {name} | {sec['means'][name]['estoi']:.4f} | {cells} |")
        lines += ["", "Per band: linear-domain SNR against the clean clip (dB) / level against "
                  "the clean (dB), means over clips.", "",
                  "| row | " + " | ".join(f"{lo}-{hi} Hz" for lo, hi in BANDS) + " |",
                  "|---" * (len(BANDS) + 1) + "|"]  # fmt: skip
        for name, m in sec["means"].items():
            cells = " | ".join(f"{m[f'snr {lo}']:.1f} / {m[f'level {lo}']:+.2f}" for lo, _ in BANDS)
            lines.append(f"| {name} | {cells} |")
        lines.append("")
    lines += [f"## 2. Every noise type x SNR ({doc['sizes']['clips']} clips per condition), "
              "means: PESQ / ESTOI / SI-SDR", "",
              "| condition | noisy | " + " | ".join(names) + " |",
              "|---" * (len(names) + 2) + "|"]  # fmt: skip
    for cond, rows in doc["grid"].items():
        cells = " | ".join(
            f"{r['pesq']:.2f} / {r['estoi']:.3f} / {r['si_sdr']:.1f}" for r in rows.values()
        )
        lines.append(f"| {cond} | {cells} |")
    for name, groups in doc["vs_reference"].items():
        lines += ["", f"### {name} - {names[0]} (paired, mean ± 95% CI)", "",
                  "| group | PESQ | ESTOI | SI-SDR (dB) |", "|---|---|---|---|"]  # fmt: skip
        for g, d in groups.items():
            lines.append(f"| {g} | " + " | ".join(fmt_diff(d[m]) for m in METRICS) + " |")
    lines += ["", "## Goals", "", "| goal | met |", "|---|---|"]
    lines += [f"| {g} | {'yes' if v else '**no**'} |" for g, v in doc["goals"].items()]
    return "\n".join(lines) + "\n"


def command(argv: list[str]) -> str:
    """The command line as run, model folders written <folder> and the notes left out."""
    words, skip = [], False
    for a in argv:
        if skip or a == "--notes":
            skip = a == "--notes"
            continue
        words.append("<folder>" if Path(a).exists() else a)
    return " ".join(["nox -s bench -- speech_valid16k", *words])


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks/run.py speech_valid16k", description=__doc__)
    ap.add_argument("--models", nargs="+", default=None, help="16 kHz model folders; the first "
                    "is the reference (default: the shipped StoRM alone)")  # fmt: skip
    ap.add_argument("--clips", type=int, default=3, help="clips per grid condition (3)")
    ap.add_argument("--brown-clips", type=int, default=16, help="clips per brown SNR (16)")
    ap.add_argument("--seed", type=int, default=0, help="corpus and sampler seed")
    ap.add_argument("--notes", default="", help="a paragraph for the report")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks"), help="report folder")
    ap.add_argument("--name", default="speech-valid16k", help="report file stem")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from polydiff.core.io import atomic_write_json, atomic_write_text, nan_to_none
    from polydiff.speech import load_model
    from polydiff.speech.shipped import shipped_checkpoint

    start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f}s] {msg}", flush=True)

    folders = [Path(m).resolve() for m in args.models or [shipped_checkpoint("storm")]]
    label = {f: (f.parent.name if f.name == "model" else f.name) for f in folders}
    if len(set(label.values())) != len(folders):
        raise SystemExit(f"--models: two folders share a name in the report: {args.models}")
    models = {label[f]: load_model(f) for f in folders}
    for name, m in models.items():
        if m.spec.sample_rate != 16000:
            raise SystemExit(f"--models {name}: a {m.spec.sample_rate} Hz model, not 16 kHz")
    brown = brown_section(models, args.brown_clips, args.seed, log)
    grid, diffs = grid_section(models, args.clips, args.seed, log)
    doc = {
        "command": command(argv),
        "seed": args.seed,
        "sizes": {"clips": args.clips, "brown_clips": args.brown_clips},
        "machine": f"{os.cpu_count()} cores (shared), {torch.get_num_threads()} thread(s), "
        f"torch {torch.__version__}, no GPU",
        "models": {
            label[f]: str(f.relative_to(ROOT)) if f.is_relative_to(ROOT) else f"<runs>/{label[f]}"
            for f in folders
        },
        "notes": args.notes,
        "brown": brown,
        "grid": grid,
        "vs_reference": diffs,
        "goals": goals(grid, diffs),
    }
    doc["seconds"] = time.perf_counter() - start
    out, doc = Path(args.out), nan_to_none(doc)
    atomic_write_json(out / f"{args.name}.json", doc, indent=1)
    atomic_write_text(out / f"{args.name}.md", markdown(doc))
    log(f"wrote {out / args.name}.md and .json")
    return 0
