"""Pick a speech model's sampler setting (and training step) on validation clips, never on test.

Scores every (model folder, sampler setting) pair on the first clips of the built-in corpus's
valid/ split (rebuilt from their seeds, `polydiff.speech.evaluation.builtin_clips`): PESQ
(wide-band), ESTOI and SI-SDR, mean and 95% CI, beside the noisy input. The models are usually
checkpoints of one run at several training steps; a setting is a comma list of sampler options
(`N=30,snr=1.0,corrector_steps=1`, `N=10,t_start=0.2`, `sampler=ode,N=20`). The pick: among
the pairs that beat the noisy input on all three metrics (all pairs if none does), the one with
the highest ESTOI, the metric the micro models fall short on. The chosen setting becomes the
shipped model's config (`snr`, `t_start`, `N`), so `polydiff speech enhance` and the benchmark
use it.
Writes docs/benchmarks/speech-tuning.md and .json (``--name`` picks another stem).
Run: `nox -s bench -- speech_tune --models DIR [DIR ...] --settings 'N=30,snr=1.0' [...]`.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("pesq", "estoi", "si_sdr")


def parse_setting(text: str) -> dict[str, Any]:
    """'N=30,snr=1.0,sampler=ode' -> {'N': 30, 'snr': 1.0, 'sampler': 'ode'}."""
    out: dict[str, Any] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--settings: '{item}' in '{text}' is not key=value")
        for kind in (int, float, str):
            try:
                out[key.strip()] = kind(value.strip())
                break
            except ValueError:
                continue
    return out


def label(folder: Path) -> str:
    """A model's name in the report: its folder, or the run folder above an exported model/."""
    return folder.parent.name if folder.name == "model" else folder.name


def load(folder: Path, load_model) -> Any:
    """A saved speech method in eval mode, or a one-line error naming the folder."""
    try:
        return load_model(folder)
    except (OSError, ValueError) as err:
        raise SystemExit(f"--models {folder}: {err}") from None


def check_settings(models: dict, settings: dict[str, dict], clip) -> None:
    """Fail before the long runs, naming the setting: every (model, setting) pair enhances the
    first 0.25 s of a clip (unknown options and out-of-range values raise here)."""
    short = clip.noisy[: clip.sample_rate // 4]
    for name, model in models.items():
        for text, kwargs in settings.items():
            try:
                model.enhance(short, clip.sample_rate, seed=0, **kwargs)
            except (TypeError, ValueError) as err:
                raise SystemExit(f"--settings '{text}' on {name}: {err}") from None


def pick(results: dict[str, dict[str, dict]], noisy: dict) -> dict[str, str]:
    """The (model, setting) with the highest ESTOI among those above noisy on all metrics."""
    pairs = [(m, s, r) for m, rows in results.items() for s, r in rows.items()]
    better = [p for p in pairs if all(p[2][k]["mean"] > noisy[k]["mean"] for k in METRICS)]
    model, setting, _ = max(
        better or pairs, key=lambda p: (p[2]["estoi"]["mean"], p[2]["pesq"]["mean"])
    )
    return {"model": model, "setting": setting, "beats_noisy_on_all": bool(better)}


def markdown(doc: dict) -> str:
    def cell(r: dict, m: str) -> str:
        ci = r[m]["ci"]
        return f"{r[m]['mean']:.3f}" + ("" if ci is None else f" ± {ci:.3f}")

    lines = [
        "# Sampler settings chosen on validation clips (speech)",
        "",
        f"Command: `{doc['command']}` (seed {doc['seed']}). {doc['clips']} clips of the built-in "
        f"corpus's valid/ split ({doc['audio_seconds']:.1f} s of audio), {doc['machine']}. "
        f"Total wall time {doc['seconds'] / 60:.1f} min. Model folders: {doc['models']}.",
        "",
        f"**Pick:** `{doc['pick']['setting']}` on `{doc['pick']['model']}` (highest ESTOI among "
        "the pairs above the noisy input on all three metrics"
        + ("" if doc["pick"]["beats_noisy_on_all"] else "; no pair is, so among all pairs")
        + ").",
        "",
        "| model | setting | PESQ | ESTOI | SI-SDR (dB) | RTF |",
        "|---|---|---|---|---|---|",
        f"| noisy | - | {' | '.join(cell(doc['noisy'], m) for m in METRICS)} | - |",
    ]
    for model, rows in doc["results"].items():
        for setting, r in rows.items():
            metrics = " | ".join(cell(r, m) for m in METRICS)
            lines.append(f"| {model} | `{setting}` | {metrics} | {r['rtf']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks/run.py speech_tune", description=__doc__)
    ap.add_argument("--models", nargs="+", required=True, help="exported model folders")
    ap.add_argument("--settings", nargs="+", required=True, help="e.g. 'N=30,snr=1.0'")
    ap.add_argument("--clips", type=int, default=8, help="valid clips (default 8)")
    ap.add_argument("--seed", type=int, default=0, help="corpus and sampler seed")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks"), help="report folder")
    ap.add_argument("--name", default="speech-tuning", help="report file stem")
    args = ap.parse_args(argv)
    settings = {s: parse_setting(s) for s in args.settings}
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from polydiff.core.io import atomic_write_json, atomic_write_text, nan_to_none
    from polydiff.speech import load_model
    from polydiff.speech.evaluation import builtin_clips, compare, score_set, set_summary

    start = time.perf_counter()
    folders = {label(Path(m)): Path(m) for m in args.models}
    if len(folders) != len(args.models):
        raise SystemExit(f"--models: two folders share a name in the report: {args.models}")
    models = {name: load(folder, load_model) for name, folder in folders.items()}
    rates = {m.spec.sample_rate for m in models.values()}
    if len(rates) != 1:
        raise SystemExit(f"--models: mixed sample rates {sorted(rates)}")
    clips = builtin_clips(args.clips, rates.pop(), seed=args.seed, split="valid")
    check_settings(models, settings, clips[0])
    noisy = set_summary(score_set(clips, [c.noisy for c in clips]), None, clips)
    results: dict[str, dict[str, dict]] = {}
    for name, model in models.items():
        print(name, flush=True)
        rows = [(text, model, kwargs) for text, kwargs in settings.items()]
        results[name] = compare(clips, rows, seed=args.seed, log=lambda s: print(s, flush=True))[0]
    quoted = " ".join(f"'{s}'" for s in args.settings)
    doc = {
        "command": f"nox -s bench -- speech_tune --models <{len(folders)} folders> "
        f"--settings {quoted} --clips {args.clips}"
        + (f" --seed {args.seed}" if args.seed != 0 else "")
        + (f" --name {args.name}" if args.name != "speech-tuning" else ""),
        "models": {name: f".../{f.parent.name}/{f.name}" for name, f in folders.items()},
        "seed": args.seed,
        "clips": len(clips),
        "audio_seconds": noisy["audio_seconds"],
        "machine": f"{os.cpu_count()} cores (shared), {torch.get_num_threads()} thread(s), "
        f"torch {torch.__version__}",
        "noisy": noisy,
        "results": results,
        "pick": pick(results, noisy),
        "seconds": time.perf_counter() - start,
    }
    out, doc = Path(args.out), nan_to_none(doc)
    atomic_write_json(out / f"{args.name}.json", doc, indent=1)
    atomic_write_text(out / f"{args.name}.md", markdown(doc))
    print(f"pick: {doc['pick']}; wrote {out / args.name}.md", flush=True)
    return 0
