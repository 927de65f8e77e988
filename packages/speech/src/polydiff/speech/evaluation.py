"""Held-out evaluation sets and side-by-side scoring of enhancement methods (demo, benchmark).

Two test sets, both in memory at the model's sample rate: the held-out clips of the built-in
corpus (`builtin_clips`: the very files `polydiff speech data` writes to test/ or valid/,
rebuilt from their seeds) and real recordings mixed with noise (`real_test_clips`:
alsa-utils). `run_method` enhances a set with one sampler setting and times it (real-time
factor), `score_set` gives the per-file PESQ / ESTOI / SI-SDR / SI-SIR / SI-SAR,
`set_summary` their means with CIs and `compare` does all three for rows of methods and settings
(the demo's and the benchmarks' tables).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polydiff.speech.audio import AUDIO_EXTENSIONS, SpecConfig, load_audio
from polydiff.speech.method import SpeechMethod
from polydiff.speech.metrics import evaluate_pair, summarize


@dataclass
class Clip:
    """One (clean, noisy) test pair at ``sample_rate``."""

    name: str
    clean: np.ndarray
    noisy: np.ndarray
    sample_rate: int
    meta: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.noisy.shape[-1] / self.sample_rate


def builtin_clips(
    n: int, sample_rate: int, seed: int = 0, start: int = 0, split: str = "test", **corpus: Any
) -> list[Clip]:
    """Clips ``start .. start+n-1`` of the built-in corpus's ``split`` ("test" or "valid";
    ``CorpusConfig(seed=seed, sample_rate=sample_rate, **corpus)``): the very files of a
    `polydiff speech data` run with the same options. Training fits train/; valid/ gives its
    validation loss and picks sampler settings; test/ is seen only by the benchmark and demo."""
    from polydiff.speech.data.synth import CorpusConfig, subset_clips

    cfg = CorpusConfig(sample_rate=sample_rate, seed=seed, **corpus)
    return [
        Clip(name, clean.astype(np.float32), noisy.astype(np.float32), sample_rate, meta)
        for name, clean, noisy, meta in subset_clips(cfg, split, range(start, start + n))
    ]


def real_test_clips(n: int | None, sample_rate: int, seed: int = 0) -> list[Clip]:
    """The first ``n`` (None: all) alsa-utils recordings mixed with noise at SNR U[0, 20] dB
    (`polydiff.speech.data.real`); [] when alsa-utils is not installed."""
    from polydiff.speech.data.real import alsa_speech_files, real_noisy_set

    files = alsa_speech_files()[:n]
    return [
        Clip(name, clean, noisy, sample_rate, meta)
        for name, clean, noisy, meta in real_noisy_set(files, sample_rate, seed=seed)
    ]


@torch.no_grad()
def run_method(
    method: SpeechMethod, clips: list[Clip], seed: int = 0, **options: Any
) -> tuple[list[np.ndarray], float]:
    """Enhance every clip (clip k with ``seed + k``, `SpeechMethod.enhance`) with the sampler
    setting ``options``; returns (estimates, wall seconds)."""
    start = time.perf_counter()
    estimates = [
        method.enhance(c.noisy, c.sample_rate, seed=seed + k, **options)
        for k, c in enumerate(clips)
    ]
    return estimates, time.perf_counter() - start


def score_set(clips: list[Clip], estimates: list[np.ndarray]) -> list[dict]:
    """Per-file metrics (PESQ, ESTOI, SI-SDR/SIR/SAR) of ``estimates`` against the clean clips."""
    rows = []
    for clip, est in zip(clips, estimates, strict=True):
        row = evaluate_pair(clip.clean, est, clip.sample_rate, noisy=clip.noisy)
        rows.append({"file": clip.name, **row})
    return rows


def set_summary(rows: list[dict], seconds: float | None, clips: list[Clip]) -> dict:
    """Means with CIs per metric, plus the real-time factor (wall seconds / audio seconds)."""
    out: dict[str, Any] = summarize(rows)
    audio = sum(c.seconds for c in clips)
    out["rtf"] = None if seconds is None else seconds / audio
    out["audio_seconds"] = audio
    return out


METRICS = ("pesq", "estoi", "si_sdr")  # the three every table reports
Row = tuple[str, SpeechMethod | None, dict]  # (name, method or None: the noisy input, options)


def compare(
    clips: list[Clip], rows: list[Row], seed: int = 0, log: Callable[[str], None] | None = None
) -> tuple[dict[str, dict], dict[str, list[np.ndarray]]]:
    """Enhance and score ``clips`` once per row ``(name, method, options)`` (method None: the
    noisy input itself), as the demo and the benchmarks report them. Returns ({name: summary}
    with the metric means and CIs, "rtf", "audio_seconds", "nfe" and "seconds"; {name:
    estimates}); ``log`` gets one line per row."""
    summaries, estimates = {}, {}
    for name, method, options in rows:
        if method is None:
            estimates[name], seconds = [c.noisy for c in clips], None
        else:
            estimates[name], seconds = run_method(method, clips, seed=seed, **options)
        summary = set_summary(score_set(clips, estimates[name]), seconds, clips)
        summary["nfe"] = 0 if method is None else method.nfe(**options)
        summary["seconds"] = seconds
        summaries[name] = summary
        if log is not None:
            metrics = ", ".join(f"{m} {summary[m]['mean']:.3f}" for m in METRICS)
            log(f"  {name}: {metrics}" + ("" if seconds is None else f", RTF {summary['rtf']:.2f}"))
    return summaries, estimates


def demo_rows(
    method: SpeechMethod,
    clips: list[Clip],
    options: dict,
    compare_N: tuple[int, ...] | list[int] = (),
    seed: int = 0,
    audio_dir: str | os.PathLike | None = None,
) -> tuple[dict[str, dict], list[np.ndarray]]:
    """The demo's table of one set (`compare`): the noisy input, the setting ``options`` and the
    same setting with each step count of ``compare_N``, each row's metric means. Returns
    ({row name: means, "rtf", "nfe", ...}, the estimates of ``options``); with ``audio_dir``
    writes <stem>_noisy.wav, <stem>_enhanced.wav and <stem>_clean.wav of every clip there."""
    from polydiff.speech.audio import save_audio

    key = method.describe(**options)
    settings = {key: dict(options)}
    for n in compare_N:
        settings.setdefault(method.describe(**{**options, "N": int(n)}), {**options, "N": int(n)})
    rows = [("noisy", None, {})] + [(name, method, o) for name, o in settings.items()]
    summaries, estimates = compare(clips, rows, seed=seed)
    means = {
        name: {k: v["mean"] if isinstance(v, dict) else v for k, v in summary.items()}
        for name, summary in summaries.items()
    }
    for clip, est in zip(clips, estimates[key], strict=True) if audio_dir is not None else ():
        stem = Path(clip.name).stem
        for kind, audio in (("noisy", clip.noisy), ("enhanced", est), ("clean", clip.clean)):
            save_audio(Path(audio_dir) / f"{stem}_{kind}.wav", audio, clip.sample_rate)
    return means, estimates[key]


@torch.no_grad()
def demo_sets(
    method: SpeechMethod,
    out_dir: str | os.PathLike,
    *,
    clips: int = 3,
    real: int = 1,
    corpus_seed: int = 0,
    options: dict | None = None,
    compare_N: tuple[int, ...] | list[int] = (),
    seed: int = 0,
) -> dict[str, Any]:
    """The speech demo: ``clips`` held-out built-in clips and ``real`` alsa-utils recordings
    (skipped when absent) through `demo_rows`, the audio in ``out_dir``/audio and the
    spectrograms of the first clip in ``out_dir``/spectrogram.png. Returns {"method",
    "sample_rate", "sampler_options" (default N: the config's), "sets": {set: rows},
    "headline" (the setting's PESQ, ESTOI, SI-SDR, RTF on the first set), "plot"}."""
    from polydiff.speech.plots import plot_spectrograms

    out_dir, sr = Path(out_dir), method.spec.sample_rate
    options = {"N": int(method.config.N), **(options or {})}
    sets = {"built-in": builtin_clips(clips, sr, seed=corpus_seed)}
    if real:
        sets["real (alsa)"] = real_test_clips(real, sr)
        if not sets["real (alsa)"]:
            del sets["real (alsa)"]
            print("alsa-utils recordings not found: the real-speech row is skipped")
    results = {
        name: demo_rows(method, c, options, compare_N, seed, out_dir / "audio")
        for name, c in sets.items()
    }
    clip, estimate = next(iter(sets.values()))[0], next(iter(results.values()))[1][0]
    signals = {"noisy": clip.noisy, "enhanced": estimate, "clean": clip.clean}
    plot = plot_spectrograms(signals, out_dir / "spectrogram.png", method.spec, title=clip.name)
    sets_rows = {name: rows for name, (rows, _) in results.items()}
    first, row = next(iter(sets_rows.values())), method.describe(**options)
    headline = {"PESQ": first[row]["pesq"], "PESQ noisy": first["noisy"]["pesq"]}
    headline.update({"ESTOI": first[row]["estoi"], "SI-SDR (dB)": first[row]["si_sdr"]})
    headline["RTF"] = first[row]["rtf"]
    return {
        "method": method.name,
        "sample_rate": sr,
        "sampler_options": options,
        "sets": sets_rows,
        "headline": headline,
        "plot": plot,
    }


def demo_markdown(model: str, metrics: dict) -> str:
    """One table per set of `demo_sets`: PESQ, ESTOI, SI-SDR means and the real-time factor."""
    lines = [f"Model `{model}` ({metrics['method']}, {metrics['sample_rate']} Hz)."]
    for name, rows in metrics["sets"].items():
        secs = rows["noisy"]["audio_seconds"]
        lines += ["", f"**{name}** ({secs:.1f} s of audio)", ""]
        lines += ["| method | PESQ | ESTOI | SI-SDR (dB) | RTF |", "|---|---|---|---|---|"]
        for row, r in rows.items():
            rtf = "-" if r["rtf"] is None else f"{r['rtf']:.2f}"
            lines.append(
                f"| {row} | {r['pesq']:.3f} | {r['estoi']:.3f} | {r['si_sdr']:.2f} | {rtf} |"
            )
    return "\n".join(lines)


def check_pairs(enhanced: Path, references: list[Path]) -> None:
    """Every enhanced .wav/.flac needs its namesake in each reference folder (cheap, before any
    metric): otherwise one ValueError naming the first missing file."""
    names = [p.name for p in sorted(enhanced.iterdir()) if p.suffix.lower() in AUDIO_EXTENSIONS]
    if not names:
        raise ValueError(f"{enhanced}: no .wav/.flac files")
    for folder in references:
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise ValueError(
                f"{folder / missing[0]} is missing (the reference of an enhanced file{more})"
            )


def _mean_and_ci(v: Mapping[str, Any]) -> str:
    """ "mean ± CI (n=...)"; a single file has no confidence interval."""
    ci = f" ± {v['ci']:.3f}" if math.isfinite(v["ci"]) else " (no CI)"
    return f"{v['mean']:.3f}{ci} (n={v['n']})"


def evaluate_folders(
    clean: str | os.PathLike,
    enhanced: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    noisy: str | os.PathLike | None = None,
    sample_rate: int = 16000,
    plot: bool = True,
) -> dict[str, Any]:
    """Score the enhanced files against the clean ones of the same name (PESQ, ESTOI, SI-SDR;
    with ``noisy``, SI-SIR / SI-SAR and the noisy input's own scores) at ``sample_rate``. Writes
    ``out_dir``/metrics.csv, metrics.json (and noisy_metrics.csv), with ``plot`` the spectrograms
    of the first file (spectrogram.png). Returns {"summary": ..., "noisy_summary": ..., "table":
    {metric: "mean ± CI (n=...)   noisy: mean"}}."""
    from polydiff.speech.metrics import evaluate_folder, write_metrics
    from polydiff.speech.plots import plot_spectrograms

    clean, enhanced, out_dir = Path(clean), Path(enhanced), Path(out_dir)
    noisy = None if noisy is None else Path(noisy)
    check_pairs(enhanced, [d for d in (clean, noisy) if d is not None])
    sr = int(sample_rate)
    rows = evaluate_folder(clean, enhanced, noisy_dir=noisy, sample_rate=sr)
    extra: dict[str, Any] = {"clean": str(clean), "enhanced": str(enhanced), "sample_rate": sr}
    if noisy is not None:
        keep = {Path(r["file"]).as_posix() for r in rows}
        baseline = evaluate_folder(clean, noisy, noisy_dir=noisy, sample_rate=sr)
        baseline = [r for r in baseline if Path(r["file"]).as_posix() in keep]
        extra["noisy"] = str(noisy)
        extra["noisy_summary"] = write_metrics(baseline, out_dir / "noisy_metrics.csv")
    summary = write_metrics(rows, out_dir / "metrics.csv", out_dir / "metrics.json", extra=extra)
    if plot:
        name, signals = rows[0]["file"], {}
        if noisy is not None:
            signals["noisy"] = load_audio(noisy / name, sample_rate=sr)[0]
        signals["enhanced"] = load_audio(enhanced / name, sample_rate=sr, allow_silence=True)[0]
        signals["clean"] = load_audio(clean / name, sample_rate=sr)[0]
        spec = SpecConfig(sample_rate=sr, n_fft=2 * (sr // 64) - 2, hop_length=sr // 125)
        plot_spectrograms(signals, out_dir / "spectrogram.png", spec, title=str(name))
    noisy_summary = extra.get("noisy_summary") or {}
    table = {k: _mean_and_ci(v) for k, v in summary.items()}
    for k, v in noisy_summary.items():
        table[k] += f"   noisy: {v['mean']:.3f}"
    return {"summary": summary, "noisy_summary": extra.get("noisy_summary"), "table": table}


__all__ = [
    "Clip",
    "builtin_clips",
    "check_pairs",
    "compare",
    "demo_markdown",
    "demo_rows",
    "demo_sets",
    "evaluate_folders",
    "real_test_clips",
    "run_method",
    "score_set",
    "set_summary",
]
