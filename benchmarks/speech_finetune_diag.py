"""Why a 16 kHz fine-tune of a StoRM can lower the enhancement metrics: its predictive loss, split.

For each model folder, the predictive network D's loss 0.5 |D(y) - x|^2 (summed over the bins of
a 64-frame crop, meaned over crops; the training loss's units) is split into the band below and
above sample_rate / 4 (0-4 kHz, where an 8 kHz model was trained and where speech energy, hence
SI-SDR and PESQ, lives; 4-8 kHz) and measured
- on the centre crops of a training corpus's valid/ split (``--corpus``; what training logs), and
- on the non-overlapping 64-frame crops of the benchmark's validation clips (the built-in corpus's
  valid/ split, `speech_tune`'s clips), each crop normalised by its own noisy peak (as in
  training) and by its whole file's noisy peak (as in enhancement), both reported in the
  per-crop units, so the two normalisations compare.
It also reports how far below 1 a crop's peak falls under whole-file normalisation (training
crops always have peak 1). Validation data only. Writes docs/benchmarks/<name>.md and .json.
Run: `nox -s bench -- speech_finetune_diag --models DIR [DIR ...] [--corpus DIR]`.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 64
LEVELS = (0.8, 0.6, 0.4)  # crop peaks below the training crops' 1 (whole-file normalisation)


def split_loss(model, y: torch.Tensor, x: torch.Tensor, weight: float = 1.0) -> list[float]:
    """[all, low, high] predictive loss of compressed spectrograms (F, frames), times ``weight``,
    then the energies of the clean and of the error in the linear (uncompressed) STFT domain."""
    from polydiff.speech.audio import decompress, pad_frames

    with torch.no_grad():
        padded, n = pad_frames(y[None], model.frame_multiple)
        d = model.net.predict(padded)[0, :, :n]
    err = 0.5 * weight * (d - x).abs().square()
    split = model.spec.n_fft // 4 + 1  # bins below sample_rate / 4
    spec = model.spec
    lin_x, lin_d = (decompress(s, spec.alpha, spec.beta) for s in (x, d))
    lin = [lin_x.abs().square().sum().item(), (lin_d - lin_x).abs().square().sum().item()]
    return [err.sum().item(), err[:split].sum().item(), err[split:].sum().item(), *lin]


def crop_loss(model, noisy: np.ndarray, clean: np.ndarray, scale: float, unit: float) -> list:
    """`split_loss` of one crop normalised by ``scale``, in the units of the crop normalised by
    ``unit`` (the compressed spectrogram scales as amplitude^alpha)."""
    from polydiff.speech.audio import to_spec

    spec = model.spec
    y, x = (to_spec(torch.from_numpy(a / scale), spec) for a in (noisy, clean))
    return split_loss(model, y, x, (scale / unit) ** (2 * spec.alpha))


def crops(clips, hop: int) -> list[tuple[np.ndarray, np.ndarray, float, float]]:
    """Non-overlapping 64-frame crops: (clean, noisy, crop peak, file peak)."""
    length = (FRAMES - 1) * hop
    out = []
    for c in clips:
        peak = float(np.abs(c.noisy).max())
        for s in range(0, c.noisy.size - length + 1, length):
            n = c.noisy[s : s + length]
            out.append((c.clean[s : s + length], n, float(np.abs(n).max()), peak))
    return out


def row(values: list[list[float]]) -> dict:
    """Mean compressed-domain losses and the linear-domain spectral SNR (dB) over all crops."""
    a = np.asarray(values)
    out = {k: float(a[:, i].mean()) for i, k in enumerate(("all", "low", "high"))}
    return {**out, "linear_snr_db": float(10 * np.log10(a[:, 3].sum() / a[:, 4].sum()))}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks/run.py speech_finetune_diag", description=__doc__)
    ap.add_argument("--models", nargs="+", required=True, help="exported model folders")
    ap.add_argument("--corpus", default=None, help="a training corpus with valid/{clean,noisy}")
    ap.add_argument("--clips", type=int, default=8, help="benchmark valid clips (default 8)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks"), help="report folder")
    ap.add_argument("--name", default="speech-finetune-diag", help="report file stem")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from polydiff.core.io import atomic_write_json, atomic_write_text
    from polydiff.speech import load_model
    from polydiff.speech.data import PairedSpeech
    from polydiff.speech.evaluation import builtin_clips

    start = time.perf_counter()
    folders = {
        Path(m).parent.name if Path(m).name == "model" else Path(m).name: m for m in args.models
    }
    models = {name: load_model(f) for name, f in folders.items()}
    first = next(iter(models.values()))
    clips = builtin_clips(args.clips, first.spec.sample_rate, split="valid")
    pieces = crops(clips, first.spec.hop_length)
    ratios = np.array([p / g for _, _, p, g in pieces])
    results = {}
    for name, m in models.items():
        m.net.eval()
        r = {
            "crop_norm": row([crop_loss(m, n, c, p, p) for c, n, p, _ in pieces]),
            "file_norm": row([crop_loss(m, n, c, g, p) for c, n, p, g in pieces]),
            "level_snr_db": {
                str(level): row([crop_loss(m, n, c, p / level, p) for c, n, p, _ in pieces])[
                    "linear_snr_db"
                ]
                for level in LEVELS
            },
        }
        if args.corpus:
            items = PairedSpeech(args.corpus, "valid", m.spec, num_frames=FRAMES, crop="center")
            r["corpus_valid"] = row([split_loss(m, it["noisy"], it["clean"]) for it in items])
        results[name] = r
        print(name, r, flush=True)
    doc = {
        "command": f"nox -s bench -- speech_finetune_diag --models <{len(models)} folders>"
        + (" --corpus <16 kHz corpus>" if args.corpus else ""),
        "models": list(models),
        "clips": len(clips),
        "crops": len(pieces),
        "crop_peak_over_file_peak": {
            q: float(np.quantile(ratios, v))
            for q, v in (("p10", 0.1), ("median", 0.5), ("p90", 0.9))
        },
        "results": results,
        "goals": goals(results),
        "machine": f"{os.cpu_count()} cores (shared), {torch.get_num_threads()} thread(s), "
        f"torch {torch.__version__}",
        "seconds": time.perf_counter() - start,
    }
    out = Path(args.out)
    atomic_write_json(out / f"{args.name}.json", doc, indent=1)
    atomic_write_text(out / f"{args.name}.md", markdown(doc))
    print(f"wrote {out / args.name}.md", flush=True)
    return 0


def goals(results: dict) -> dict[str, bool]:
    """The first model is the reference (step 0): does another beat its linear-domain SNR at the
    enhancement level, and does that level (whole-file normalisation) suit the reference?"""
    first, *others = results.values()
    snr = first["file_norm"]["linear_snr_db"]
    return {
        "a_later_model_beats_the_first_at_the_enhancement_level": any(
            r["file_norm"]["linear_snr_db"] > snr for r in others
        ),
        "whole_file_level_suits_the_first_model": snr > first["crop_norm"]["linear_snr_db"],
    }


def markdown(doc: dict) -> str:
    q = doc["crop_peak_over_file_peak"]
    lines = [
        "# Why fine-tuning at 16 kHz lowers the metrics: the predictive loss, split (speech)",
        "",
        f"Command: `{doc['command']}`. Validation data only: the first {doc['clips']} clips of the "
        f"built-in corpus's valid/ split ({doc['crops']} non-overlapping 64-frame crops) and, "
        "where given, the centre crops of the fine-tuning corpus's valid/ split. "
        f"{doc['machine']}; {doc['seconds']:.0f} s.",
        "",
        "Predictive loss 0.5 |D(y) - x|^2 summed over a crop's bins (training units), "
        "all bins / below 4 kHz / above 4 kHz, then the spectral SNR of D(y) in the linear "
        "(uncompressed) STFT domain, sum |X|^2 / sum |D - X|^2 over the crops, the quantity that "
        "SI-SDR tracks. The first model is the reference; goals: "
        + ", ".join(f"`{k}`: {v}" for k, v in doc["goals"].items())
        + ". Under whole-file normalisation a crop's noisy peak "
        f"is {q['median']:.2f} of 1 (median; 10 % {q['p10']:.2f}, 90 % {q['p90']:.2f}).",
        "",
        "| model | corpus valid (per-crop norm) | bench valid, per-crop norm | "
        "bench valid, whole-file norm |",
        "|---|---|---|---|",
    ]

    def cell(r: dict | None) -> str:
        if r is None:
            return "-"
        return f"{r['all']:.1f} / {r['low']:.1f} / {r['high']:.1f} / {r['linear_snr_db']:.2f} dB"

    for name, r in doc["results"].items():
        lines.append(
            f"| {name} | {cell(r.get('corpus_valid'))} | {cell(r['crop_norm'])} | "
            f"{cell(r['file_norm'])} |"
        )
    levels = list(next(iter(doc["results"].values()))["level_snr_db"])
    lines += [
        "",
        "Level sensitivity: the linear-domain spectral SNR (dB) of D(y) on the same crops, each "
        "scaled to the noisy peak given (per-crop normalisation is peak 1).",
        "",
        "| model | peak 1 | " + " | ".join(f"peak {v}" for v in levels) + " |",
        "|---|---|" + "---|" * len(levels),
    ]
    for name, r in doc["results"].items():
        snrs = [r["crop_norm"]["linear_snr_db"], *r["level_snr_db"].values()]
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in snrs) + " |")
    return "\n".join(lines) + "\n"
