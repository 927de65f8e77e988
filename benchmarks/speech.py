"""polydiff.speech: SGMSE+ and StoRM side by side on held-out built-in clips and real recordings.

With the shipped micro models (8 kHz; or --storm / --sgmse folders), in one run on this CPU:
1. quality: PESQ (wide-band, on 8 kHz material resampled to 16 kHz), ESTOI and SI-SDR (mean and
   95% CI over files) of the noisy input, StoRM's predictive network alone (N = 0, 1 NFE),
   SGMSE+ at N = 30 with one corrector step (60 NFE) and StoRM at N = 5, 10, 30 (no corrector,
   as its authors recommend; 1 + N NFE) from the paper's t = 1 and, when the StoRM model's
   config sets another ``t_start`` (chosen on validation clips), from that time too, on (a)
   the first clips of the built-in corpus's test split (rebuilt from their seeds: never seen in
   training) and (b) the alsa-utils recordings mixed with synthetic noise and the recorded
   Noise.wav at SNR U[0, 20] dB;
2. speed: real-time factor (wall seconds / audio seconds, 1 thread) of each method, measured in
   the same process, and the NFE ratio StoRM N = 10 / SGMSE+ N = 30;
3. memory vs file length: peak RSS growth (over the loaded model) of a fresh process that streams
   a 1-minute and a 10-minute file through `enhance_file` (the predictive network, chunked).
Goals (booleans in the JSON): every method improves all three metrics over the noisy input;
StoRM N = 10 matches or beats SGMSE+ N = 30 on all three metrics at <= 1/4 of its compute;
memory stays flat with length (10-minute growth within 8 MB of the 1-minute growth, i.e. less
than half of one 10-minute float32 copy of the signal).
Writes docs/benchmarks/speech.md and speech.json.
Run: `nox -s bench -- speech` (or `python benchmarks/run.py speech [--quick] [--clips N]`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("pesq", "estoi", "si_sdr")
FULL = {"clips": 8, "real": 8, "sgmse_N": 30, "sgmse_corrector": 1, "storm_N": [5, 10, 30],
        "memory_seconds": [60, 600]}  # fmt: skip
QUICK = {"clips": 2, "real": 2, "sgmse_N": 3, "sgmse_corrector": 1, "storm_N": [1, 2, 3],
         "memory_seconds": [5, 30]}  # fmt: skip

MEMORY_PROBE = """
import resource, sys, numpy as np, torch
torch.set_num_threads(1)
from polydiff.speech import enhance_audio_file, load_model
method = load_model(sys.argv[1])
with torch.inference_mode():
    method.enhance(np.full(4 * method.spec.sample_rate, 1e-3, np.float32), N=0)  # one chunk: warm
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    enhance_audio_file(method, sys.argv[2], sys.argv[3], N=0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(base, peak)
"""


PAPER = " (paper's t=1)"  # suffix of StoRM rows from the paper's start when the model has another


def sgmse_row(sizes: dict[str, Any]) -> str:
    return f"SGMSE+ N={sizes['sgmse_N']} (corrector, snr {sizes['sgmse_snr']:g})"


def methods(sizes: dict[str, Any], models: dict) -> list[tuple[str, Any, dict]]:
    """(row name, method, sampler options) in report order (`evaluation.compare` rows); method
    None is the noisy input itself."""
    storm = models["storm"]
    rows = [("noisy", None, {}), ("predictive (StoRM D)", storm, {"N": 0})]
    if "sgmse" in models:
        n, c = sizes["sgmse_N"], sizes["sgmse_corrector"]
        rows.append((sgmse_row(sizes), models["sgmse"], {"N": n, "corrector_steps": c}))
    for t in sizes["storm_t_start"]:
        rows += [
            (storm_row(n, t, sizes), storm, {"N": n, "corrector_steps": 0, "t_start": t})
            for n in sizes["storm_N"]
        ]
    return rows


def storm_row(N: int, t_start: float, sizes: dict[str, Any]) -> str:
    """Row name of StoRM at N steps from t_start; the paper's t = 1 is marked as such when the
    model's own (validated) start differs."""
    if t_start != 1:
        return f"StoRM N={N}, t_start={t_start:g}"
    return f"StoRM N={N}" + (PAPER if len(sizes["storm_t_start"]) > 1 else "")


def memory(model_dir: Path, clips: list, seconds_list: list[int], log) -> dict[str, Any]:
    """Peak RSS of a fresh process streaming files of each length (tiled noisy test clips)."""
    import soundfile as sf

    sr = clips[0].sample_rate
    signal = np.concatenate([c.noisy for c in clips])
    out: dict[str, Any] = {"method": "StoRM predictive network (N = 0), 4 s chunks"}
    with tempfile.TemporaryDirectory() as tmp:
        for secs in seconds_list:
            src, dst = Path(tmp) / f"in_{secs}.wav", Path(tmp) / f"out_{secs}.wav"
            sf.write(src, np.resize(signal, secs * sr), sr, subtype="PCM_16")
            env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
            start = time.perf_counter()
            res = subprocess.run(
                [sys.executable, "-c", MEMORY_PROBE, str(model_dir), str(src), str(dst)],
                capture_output=True, text=True, env=env, check=False,
            )  # fmt: skip
            if res.returncode:
                raise RuntimeError(f"memory probe failed: {res.stderr[-2000:]}")
            base, peak = (int(v) / 1024 for v in res.stdout.split()[-2:])  # KiB -> MiB
            out[str(secs)] = {"baseline_mb": base, "peak_mb": peak, "growth_mb": peak - base,
                              "wall_seconds": time.perf_counter() - start}  # fmt: skip
            log(f"  {secs} s file: peak RSS {peak:.0f} MB, growth {peak - base:.1f} MB")
    return out


def goals(results: dict, memory_res: dict, sizes: dict, have_sgmse: bool) -> dict[str, Any]:
    """The issue's goals as booleans (None when the comparison could not be run)."""
    g: dict[str, Any] = {}
    for set_name, rows in results.items():
        noisy = rows["noisy"]
        for name, r in rows.items():
            if name != "noisy":
                better = all(r[m]["mean"] > noisy[m]["mean"] for m in METRICS)
                g[f"{set_name}: {name} improves all three over noisy"] = better
    key30 = sgmse_row(sizes) if have_sgmse else ""
    for set_name, rows in results.items():
        for t in sizes["storm_t_start"]:
            key10 = storm_row(10, t, sizes)
            goal = f"{set_name}: {key10} >= SGMSE+ N=30 at <= 1/4 compute"
            if not have_sgmse or key10 not in rows:
                g[goal] = None
                continue
            s, b = rows[key10], rows[key30]
            as_good = all(s[m]["mean"] >= b[m]["mean"] for m in METRICS)
            cheap = s["nfe"] <= b["nfe"] / 4 and s["rtf"] <= b["rtf"] / 4
            g[goal] = as_good and cheap
    short, long_ = (memory_res[str(s)] for s in sizes["memory_seconds"])
    g["memory flat with file length"] = long_["growth_mb"] - short["growth_mb"] <= 8.0
    return g


def fmt_metric(r: dict, m: str) -> str:
    mean, ci = r[m]["mean"], r[m]["ci"]
    if mean is None:
        return "n/a"
    return f"{mean:.3f}" + ("" if ci is None else f" ± {ci:.3f}")


def markdown(doc: dict) -> str:
    lines = ["# Benchmark: speech enhancement (SGMSE+, StoRM)", "",
             f"Command: `{doc['command']}` (seed {doc['seed']}). Machine: {doc['machine']}.",
             f"Models: {doc['models']}. Sizes: {json.dumps(doc['sizes'])}.",
             f"Total wall time {doc['seconds'] / 60:.1f} min.", ""]  # fmt: skip
    lines += [doc["notes"], "", summary(doc), ""]
    for set_name, rows in doc["results"].items():
        secs = rows["noisy"]["audio_seconds"]
        n = rows["noisy"]["pesq"]["n"]
        lines += [f"## {set_name} ({n} files, {secs:.1f} s of audio; mean ± 95% CI)", ""]
        lines += [
            "| method | NFE | PESQ | ESTOI | SI-SDR (dB) | RTF |",
            "|---|---|---|---|---|---|",
        ]
        for name, r in rows.items():
            rtf = "-" if r["rtf"] is None else f"{r['rtf']:.2f}"
            cells = " | ".join(fmt_metric(r, m) for m in METRICS)
            lines.append(f"| {name} | {r['nfe']} | {cells} | {rtf} |")
        lines.append("")
    ratios = doc["ratios"]
    if ratios:
        lines += [" / ".join(doc["ratio_rows"]) + ": " + ", ".join(
            f"{k} {v:.3f}" for k, v in ratios.items()) + ".", ""]  # fmt: skip
    mem = doc["memory"]
    lines += ["## Memory vs file length", "", f"{mem['method']}; peak RSS of a fresh process.", ""]
    lines += [
        "| file | peak RSS (MB) | growth over loaded model (MB) | wall (s) |",
        "|---|---|---|---|",
    ]
    for secs in doc["sizes"]["memory_seconds"]:
        r = mem[str(secs)]
        lines.append(
            f"| {secs} s | {r['peak_mb']:.0f} | {r['growth_mb']:.1f} | {r['wall_seconds']:.0f} |"
        )
    lines += ["", "## Goals", "", "| goal | met |", "|---|---|"]
    for goal, met in doc["goals"].items():
        lines.append(f"| {goal} | {'not run' if met is None else ('yes' if met else '**no**')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="benchmarks/run.py speech", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    ap.add_argument("--clips", type=int, default=None, help="built-in test clips (default 8)")
    ap.add_argument("--storm", default=None, help="StoRM model folder (default: shipped)")
    ap.add_argument("--sgmse", default=None, help="SGMSE+ model folder (default: shipped)")
    ap.add_argument("--out", default=None, help="report folder (default docs/benchmarks; "
                    "--quick: a temporary folder)")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    sizes = dict(QUICK if args.quick else FULL)
    if args.clips is not None:
        sizes["clips"] = args.clips
    out = Path(args.out) if args.out else (
        Path(tempfile.mkdtemp(prefix="speech-bench-")) if args.quick
        else ROOT / "docs" / "benchmarks")  # fmt: skip
    start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f}s] {msg}", flush=True)

    from polydiff.core.io import atomic_write_json, atomic_write_text, nan_to_none
    from polydiff.speech import load_model
    from polydiff.speech.evaluation import builtin_clips, compare, real_test_clips
    from polydiff.speech.shipped import shipped_checkpoint

    dirs = {"storm": Path(args.storm) if args.storm else shipped_checkpoint("storm_micro_8k")}
    try:
        dirs["sgmse"] = Path(args.sgmse) if args.sgmse else shipped_checkpoint("sgmse")
    except FileNotFoundError as err:
        log(f"no SGMSE+ model ({err}): its rows are skipped")
    models = {k: load_model(d) for k, d in dirs.items()}
    # StoRM's reverse process from the paper's t = 1 and, if the model's config says otherwise,
    # from its own t_start (chosen on validation clips: docs/speech.md, "Why the diffusion ...")
    t_model = float(models["storm"].config.t_start)
    sizes["storm_t_start"] = [1.0] + ([t_model] if t_model != 1 else [])
    if "sgmse" in models:  # the corrector snr of the model's config (chosen on validation)
        sizes["sgmse_snr"] = float(models["sgmse"].config.snr)
    sr = models["storm"].spec.sample_rate
    sets = {"built-in test set": builtin_clips(sizes["clips"], sr, seed=args.seed)}
    real = real_test_clips(sizes["real"], sr, seed=args.seed)
    if real:
        sets["real recordings (alsa-utils) + noise"] = real
    else:
        log("alsa-utils recordings not found (apt-get install alsa-utils): real set skipped")
    rows = methods(sizes, models)
    results = {}
    for set_name, clips in sets.items():
        log(f"{set_name}: {len(clips)} files")
        results[set_name] = compare(clips, rows, seed=args.seed, log=log)[0]
    log("memory vs file length")
    memory_res = memory(dirs["storm"], sets["built-in test set"], sizes["memory_seconds"], log)
    ratios, ratio_rows = {}, []
    key10 = storm_row(10, sizes["storm_t_start"][-1], sizes)  # from the model's own start
    first = next(iter(results.values()))
    if "sgmse" in models and key10 in first:
        ratio_rows = [key10, sgmse_row(sizes)]
        s, b = (first[k] for k in ratio_rows)
        ratios = {
            "NFE ratio": s["nfe"] / b["nfe"],
            "time ratio (built-in set)": s["rtf"] / b["rtf"],
        }
    command = "nox -s bench -- speech" + "".join(f" {a}" for a in argv)
    doc = {
        "command": command,
        "seed": args.seed,
        "sizes": sizes,
        "sample_rate": sr,
        "models": {
            k: str(d.relative_to(ROOT) if d.is_relative_to(ROOT) else d) for k, d in dirs.items()
        },
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), 1 thread, "
        f"torch {torch.__version__}",
        "results": results,
        "ratios": ratios,
        "ratio_rows": ratio_rows,
        "memory": memory_res,
        "goals": goals(results, memory_res, sizes, "sgmse" in models),
        "seconds": time.perf_counter() - start,
        "notes": NOTES,
    }
    doc = nan_to_none(doc)
    atomic_write_json(out / "speech.json", doc, indent=1)
    atomic_write_text(out / "speech.md", markdown(doc))
    log(f"wrote {out / 'speech.md'} and speech.json")
    return 0


NOTES = (
    "Micro models (StoRM 0.84M parameters: two NCSN++ nets of width 16, trained 3400 steps in "
    "~100 min; SGMSE+ 0.44M, 13000 steps in ~127 min; batch 4, 0.5 s crops) on the built-in "
    "corpus at 8 kHz on one shared CPU core (packages/speech/src/polydiff/speech/checkpoints/*/"
    "README.md): far from the papers' 27.8M / 65.6M networks trained for days on GPUs, so the "
    "absolute numbers are not comparable with published VoiceBank-DEMAND results. PESQ is the "
    "wide-band mode on 8 kHz signals resampled to 16 kHz (noisy and enhanced alike). Real-time "
    "factors are wall-clock on a 2-core machine shared with other jobs: compare them within this "
    "run only. The shipped models' sampler settings were chosen on validation clips "
    "(docs/benchmarks/speech-tuning-*.md): SGMSE+'s corrector snr (1.0; the paper: 0.5) and "
    "StoRM's `t_start`, where its reverse process starts (0.1; the paper: 1; its score network "
    'is under-trained at high noise: docs/speech.md, "Why the diffusion stage degraded"). '
    "Rows marked (paper's t=1) run StoRM from the paper's start."
)


def summary(doc: dict) -> str:
    """The goals in one paragraph: which are met, and plainly which are not."""
    goals = doc["goals"]
    unmet = [g for g, v in goals.items() if v is False]
    text = "**Summary:**"
    for label, names in (
        ("at the shipped models' sampler settings (chosen on validation clips)",
         [g for g in goals if PAPER not in g]),
        ("from the paper's StoRM start t = 1", [g for g in goals if PAPER in g]),
    ):  # fmt: skip
        if names:
            text += f" {label}: {sum(bool(goals[g]) for g in names)} of {len(names)} goals met;"
    text = text.rstrip(";") + "."
    if unmet:
        text += " Not met at this compute: " + "; ".join(unmet) + "."
    for set_name, rows in doc["results"].items():
        pred = rows.get("predictive (StoRM D)")
        diffusion = [n for n in rows if n not in ("noisy", "predictive (StoRM D)")]
        if pred is None or not diffusion:
            continue
        beats = [n for n in diffusion if all(rows[n][m]["mean"] > pred[m]["mean"] for m in METRICS)]
        text += (
            f" {set_name}: diffusion rows better than the predictive network alone on all three "
            f"metrics: {', '.join(beats) if beats else 'none'}."
        )
    return text


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
