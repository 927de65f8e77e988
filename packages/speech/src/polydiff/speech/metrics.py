"""Speech enhancement metrics: PESQ (wb), ESTOI, SI-SDR / SI-SIR / SI-SAR, means with 95% CIs.

SI-SDR, SI-SIR and SI-SAR follow Le Roux, Wisdom, Erdogan, Hershey (2019), "SDR – half-baked or
well done?", ICASSP, Eqs. (1)–(7): the estimate is split into a scaled target, the projection of
the residual onto span{target, interference}, and an orthogonal artifact part (BSS-eval
projections, Vincent et al. 2006, with the target allowed any scale). Note: sgmse's
`energy_ratios` projects on s and n separately, which equals this only when s is orthogonal to n.
PESQ uses the `pesq` package (ITU-T P.862.2 wide band, 16 kHz); ESTOI uses `pystoi`
(Jensen & Taal, 2016).
"""

from __future__ import annotations

import csv
import io
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import scipy.stats

from polydiff.core.errors import InputError
from polydiff.core.io import atomic_write_json, atomic_write_text, nan_to_none
from polydiff.speech.audio import AUDIO_EXTENSIONS, load_audio, resample

METRICS = ("pesq", "estoi", "si_sdr", "si_sir", "si_sar")
_REL_EPS = 1e-15  # caps a perfect estimate at +150 dB, relative so it keeps scale invariance
_TINY = np.finfo(np.float64).tiny


def _prepare(reference: np.ndarray, estimate: np.ndarray, zero_mean: bool):
    s = np.asarray(reference, dtype=np.float64)
    s_hat = np.asarray(estimate, dtype=np.float64)
    if s.ndim != 1 or s.shape != s_hat.shape:
        raise ValueError(f"expected two 1-D signals of equal length, got {s.shape}, {s_hat.shape}")
    if not (np.isfinite(s).all() and np.isfinite(s_hat).all()):
        raise ValueError("metric inputs contain NaN or infinite samples")
    if zero_mean:
        s, s_hat = s - s.mean(), s_hat - s_hat.mean()
    if not np.any(s):
        raise ValueError("the reference signal is silent; SI-SDR is undefined")
    return s, s_hat


def _db(num: float, den: float) -> float:
    return float(10.0 * np.log10((num + _TINY) / (den + _REL_EPS * num + _TINY)))


def si_sdr(reference: np.ndarray, estimate: np.ndarray, zero_mean: bool = True) -> float:
    """Scale-invariant SDR in dB (Le Roux et al., 2019, Eqs. (1)–(3)).

    alpha = <s_hat, s> / ||s||^2, e_target = alpha s, SI-SDR = 10 log10 ||e_target||^2 / ||s_hat -
    e_target||^2. Signals are made zero-mean first, as the paper recommends.
    """
    s, s_hat = _prepare(reference, estimate, zero_mean)
    e_target = (s_hat @ s) / (s @ s) * s
    return _db(e_target @ e_target, (s_hat - e_target) @ (s_hat - e_target))


def si_bss(
    reference: np.ndarray, interference: np.ndarray, estimate: np.ndarray, zero_mean: bool = True
) -> dict[str, float]:
    """SI-SDR, SI-SIR and SI-SAR in dB (Le Roux et al., 2019, Eqs. (4)–(7)).

    e_target = alpha s; e_interf = P_{s,n} s_hat - e_target (P = orthogonal projection onto
    span{s, n}); e_artif = s_hat - P_{s,n} s_hat. SI-SIR = 10 log10 ||e_target||^2/||e_interf||^2,
    SI-SAR = 10 log10 ||e_target||^2/||e_artif||^2, so 10^(-SDR/10) = 10^(-SIR/10) + 10^(-SAR/10).
    `interference` is the additive noise n = noisy - clean.
    """
    s, s_hat = _prepare(reference, estimate, zero_mean)
    n = np.asarray(interference, dtype=np.float64)
    if n.shape != s.shape:
        raise ValueError(f"interference length {n.shape} differs from the reference {s.shape}")
    if zero_mean:
        n = n - n.mean()
    e_target = (s_hat @ s) / (s @ s) * s
    basis = np.stack([s, n], axis=1)
    coef, *_ = np.linalg.lstsq(basis, s_hat, rcond=None)  # robust if n is (close to) parallel to s
    p_sn = basis @ coef
    e_interf, e_artif = p_sn - e_target, s_hat - p_sn
    t2 = e_target @ e_target
    return {
        "si_sdr": _db(t2, (s_hat - e_target) @ (s_hat - e_target)),
        "si_sir": _db(t2, e_interf @ e_interf),
        "si_sar": _db(t2, e_artif @ e_artif),
    }


def pesq_wb(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
    """Wide-band PESQ (ITU-T P.862.2) via the `pesq` package; resamples to 16 kHz if needed.

    Raises ValueError when PESQ finds no speech (e.g. silence or a clip shorter than ~0.25 s).
    """
    from pesq import PesqError, pesq

    if not (np.any(reference) and np.any(estimate)):
        raise ValueError("PESQ failed: silent reference or estimate")
    ref = resample(np.asarray(reference, np.float64), sample_rate, 16000)
    est = resample(np.asarray(estimate, np.float64), sample_rate, 16000)
    try:
        return float(pesq(16000, ref, est, "wb"))
    except PesqError as err:
        raise ValueError(f"PESQ failed: {type(err).__name__}: {err}") from err


def estoi(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
    """Extended STOI (Jensen & Taal, 2016) via `pystoi` (resamples to 10 kHz internally)."""
    from pystoi import stoi

    return float(stoi(np.asarray(reference), np.asarray(estimate), sample_rate, extended=True))


def evaluate_pair(
    clean: np.ndarray,
    estimate: np.ndarray,
    sample_rate: int,
    noisy: np.ndarray | None = None,
) -> dict[str, float]:
    """All metrics of one file. SI-SIR/SI-SAR need the noisy mixture (noise = noisy - clean).

    A metric that cannot be computed (PESQ on a clip without detectable speech) is NaN, with a
    warning; `summarize` leaves NaNs out of the means and reports how many values it used.
    """
    out: dict[str, float] = {}
    try:
        out["pesq"] = pesq_wb(clean, estimate, sample_rate)
    except ValueError as err:
        warnings.warn(str(err), stacklevel=2)
        out["pesq"] = math.nan
    out["estoi"] = estoi(clean, estimate, sample_rate)
    if noisy is None:
        out["si_sdr"] = si_sdr(clean, estimate)
    else:
        out.update(si_bss(clean, np.asarray(noisy) - np.asarray(clean), estimate))
    return out


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float, int]:
    """(mean, half-width of the Student-t confidence interval, n) over the finite values."""
    a = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    n = a.size
    if n == 0:
        return math.nan, math.nan, 0
    if n == 1:
        return float(a[0]), math.nan, 1
    half = scipy.stats.sem(a) * scipy.stats.t.ppf((1 + confidence) / 2, n - 1)
    return float(a.mean()), float(half), n


def summarize(
    rows: Sequence[Mapping[str, float]], confidence: float = 0.95
) -> dict[str, dict[str, float]]:
    """Per metric: {"mean", "ci" (half-width at `confidence`), "n"} over the rows that have it."""
    names = [k for k in dict.fromkeys(k for r in rows for k in r) if k != "file"]
    summary = {}
    for name in names:
        m, h, n = mean_ci((r[name] for r in rows if name in r), confidence)
        summary[name] = {"mean": m, "ci": h, "n": n}
    return summary


def write_metrics(
    rows: Sequence[Mapping[str, float | str]],
    csv_path: str | os.PathLike | None = None,
    json_path: str | os.PathLike | None = None,
    confidence: float = 0.95,
    extra: Mapping | None = None,
) -> dict:
    """Write per-file rows to CSV and {"files": rows, "summary": ..., **extra} to JSON, atomically.

    NaN values are written as empty CSV cells and JSON null (valid JSON). Returns the summary.
    """
    summary = summarize(rows, confidence)
    if csv_path is not None:
        fields = list(dict.fromkeys(k for r in rows for k in r))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: "" if nan_to_none(v) is None else v for k, v in r.items()})
        atomic_write_text(csv_path, buf.getvalue())
    if json_path is not None:
        # strict JSON: a one-file mean has an undefined CI, in `extra` (noisy_summary) too
        doc = {**(extra or {}), "confidence": confidence, "summary": summary, "files": list(rows)}
        atomic_write_json(json_path, nan_to_none(doc))
    return summary


def _common_length(name: str, sample_rate: int, clean, est, noisy):
    """The signals cut to their common length when they differ by at most 10 ms at the end
    (rounding in a resampler, a codec's padding); a longer difference is an InputError saying
    what to change."""
    tolerance = max(sample_rate // 100, 2)
    signals = [x for x in (clean, est, noisy) if x is not None]
    n = min(x.size for x in signals)
    for x, kind in ((est, "enhanced"), (noisy, "noisy")):
        if x is not None and abs(x.size - clean.size) > tolerance:
            raise InputError(
                f"{name}: the {kind} file has {x.size} samples at {sample_rate} Hz, the clean "
                f"reference {clean.size}; more than 10 ms apart, so it is not the same recording "
                "or was cut: give files of the same length (up to 10 ms)"
            )
    return clean[:n], est[:n], None if noisy is None else noisy[:n]


def evaluate_folder(
    clean_dir: str | os.PathLike,
    estimate_dir: str | os.PathLike,
    noisy_dir: str | os.PathLike | None = None,
    sample_rate: int = 16000,
) -> list[dict]:
    """Per-file metrics of every estimate in `estimate_dir` against the same name in `clean_dir`.

    All files are read mono at `sample_rate`. With `noisy_dir`, SI-SIR/SI-SAR are included.
    Files whose lengths differ by up to 10 ms (resampling rounds lengths) are compared over their
    common length. Raises FileNotFoundError for a missing folder or reference, InputError for an
    empty folder or a longer length mismatch (naming the file).
    """
    folders = [Path(clean_dir), Path(estimate_dir)] + ([Path(noisy_dir)] if noisy_dir else [])
    for d in folders:
        if not d.is_dir():
            raise FileNotFoundError(f"evaluate_folder: folder not found: {d}")
    names = sorted(
        p.name
        for p in folders[1].iterdir()
        if p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith(".")
    )
    if not names:
        raise InputError(f"{folders[1]}: no .wav/.flac files in this folder")
    rows = []
    for name in names:
        clean, _ = load_audio(folders[0] / name, sample_rate)
        est, _ = load_audio(folders[1] / name, sample_rate, allow_silence=True)
        noisy = load_audio(folders[2] / name, sample_rate)[0] if noisy_dir else None
        clean, est, noisy = _common_length(name, sample_rate, clean, est, noisy)
        rows.append({"file": name, **evaluate_pair(clean, est, sample_rate, noisy)})
    return rows
