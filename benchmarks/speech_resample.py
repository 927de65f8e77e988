"""Speech resampling: the project's polyphase path against librosa's loader, side by side.

Issue 14 asks to load and resample audio through librosa where it replaces hand-written code, or
to say, measured, why the current path is better. Compared on the same signals, in one run:
- `polydiff.speech.audio.resample` (scipy `resample_poly`, Kaiser window), which the streaming
  `enhance_file` reader reproduces block by block;
- `librosa.resample` with its default `soxr_hq` and with `polyphase` (= scipy), and
  `librosa.load(path, sr=...)` (whole file).
Measured: seconds per minute of audio (48 kHz -> 16 kHz and 16 kHz -> 48 kHz), alias rejection
(a 10 kHz tone resampled to 16 kHz, where it must vanish: residual power in dB), passband error
(a 1 kHz tone's RMS amplitude error in dB), and whether blocks read by the streaming reader equal
the whole-file result (max abs difference), and the same for soxr's `ResampleStream`.
Writes docs/benchmarks/speech-resample.md and .json. Run: `nox -s bench -- speech_resample`.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SECONDS = 60


def _tone(freq: float, sr: int, seconds: float = SECONDS) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _db(x: float) -> float:
    return float(10 * np.log10(max(x, 1e-30)))


def _time(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _quality(fn) -> dict[str, float]:
    """Alias residual (10 kHz tone 48k -> 16k, power relative to the tone) and passband
    error (1 kHz tone, RMS amplitude ratio in dB), away from the edges."""
    mid = slice(16000, -16000)
    alias = fn(_tone(10000, 48000), 48000, 16000)[mid]
    passband = fn(_tone(1000, 48000), 48000, 16000)[mid]
    ref_power = 0.5**2 / 2
    return {
        "alias_db": _db(float(np.mean(alias.astype(np.float64) ** 2)) / ref_power),
        "passband_error_db": abs(_db(float(np.mean(passband.astype(np.float64) ** 2)) / ref_power)),
    }


def _streaming_block_error(path: Path) -> float:
    """Max |block - whole file| of the streaming reader (48 kHz file -> 16 kHz)."""
    import soundfile as sf

    from polydiff.speech.audio import load_audio
    from polydiff.speech.chunking import _ResampledReader

    whole, _ = load_audio(path, 16000)
    with sf.SoundFile(str(path)) as f:
        reader = _ResampledReader(f, 16000, "mix")
        blocks = [
            reader.read(a, min(a + 64000, reader.length)) for a in range(0, reader.length, 64000)
        ]
    return float(np.abs(np.concatenate(blocks, axis=1)[0] - whole).max())


def _soxr_stream_block_error(x: np.ndarray) -> float:
    """Max |sequential blocks - whole signal| of soxr's own streaming resampler (48 -> 16 kHz):
    whether a soxr-based streaming reader could keep the block-exactness of ours."""
    import soxr

    whole = soxr.resample(x, 48000, 16000, quality="HQ")
    stream = soxr.ResampleStream(48000, 16000, 1, dtype="float32", quality="HQ")
    step = 64000 * 3  # the input span of one of the reader's 64000-sample output blocks
    blocks = [
        stream.resample_chunk(x[a : a + step], last=a + step >= len(x))
        for a in range(0, len(x), step)
    ]
    streamed = np.concatenate(blocks)
    if len(streamed) != len(whole):
        return float("inf")
    return float(np.abs(streamed - whole).max())


def main(argv: list[str]) -> int:
    import librosa
    import soundfile as sf

    from polydiff.speech.audio import load_audio, resample

    methods = {
        "polydiff resample (scipy resample_poly)": lambda x, a, b: resample(x, a, b),
        "librosa.resample soxr_hq": lambda x, a, b: librosa.resample(
            x, orig_sr=a, target_sr=b, res_type="soxr_hq"
        ),
        "librosa.resample polyphase": lambda x, a, b: librosa.resample(
            x, orig_sr=a, target_sr=b, res_type="polyphase"
        ),
    }
    rng = np.random.default_rng(0)
    x48 = (0.1 * rng.standard_normal(48000 * SECONDS)).astype(np.float32)
    x16 = x48[: 16000 * SECONDS]
    rows: dict[str, dict[str, float]] = {}
    for name, fn in methods.items():
        fn(x48[:4800], 48000, 16000)  # warm up (librosa's first call imports and JITs)
        rows[name] = {
            "s_per_min_48k_to_16k": _time(lambda fn=fn: fn(x48, 48000, 16000)) * 60 / SECONDS,
            "s_per_min_16k_to_48k": _time(lambda fn=fn: fn(x16, 16000, 48000)) * 60 / SECONDS,
            **_quality(fn),
        }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x48k.wav"
        sf.write(path, x48, 48000, "FLOAT")
        librosa.load(path, sr=16000)
        load_ours = _time(lambda: load_audio(path, 16000))
        load_librosa = _time(lambda: librosa.load(path, sr=16000))
        block_error = _streaming_block_error(path)
    soxr_block_error = _soxr_stream_block_error(x48)
    ours, soxr = rows["polydiff resample (scipy resample_poly)"], rows["librosa.resample soxr_hq"]
    goals = {
        "streaming_blocks_equal_whole_file": block_error < 1e-6,
        "alias_rejection_at_least_60_db": ours["alias_db"] <= -60,
        "passband_error_below_0.01_db": ours["passband_error_db"] < 0.01,
    }
    result = {
        "command": "nox -s bench -- speech_resample",
        "signal": f"{SECONDS} s white noise (speed), 0.5-amplitude tones (quality), float32",
        "machine": platform.machine(),
        "methods": rows,
        "load_48k_file_to_16k_s": {"polydiff load_audio": load_ours, "librosa.load": load_librosa},
        "streaming_block_max_abs_error": block_error,
        "soxr_stream_block_max_abs_error": soxr_block_error,
        "speed_ratio_soxr_over_ours_48k_to_16k": soxr["s_per_min_48k_to_16k"]
        / ours["s_per_min_48k_to_16k"],
        "goals": goals,
    }
    out = ROOT / "docs" / "benchmarks"
    (out / "speech-resample.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Speech resampling: polydiff's polyphase path vs librosa",
        "",
        f"Command: `{result['command']}` (this CPU, one process; timings are best of 3).",
        "",
        "| method | s / min 48k->16k | s / min 16k->48k | alias (dB) | passband err (dB) |",
        "|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['s_per_min_48k_to_16k']:.3f} | {r['s_per_min_16k_to_48k']:.3f} | "
            f"{r['alias_db']:.1f} | {r['passband_error_db']:.4f} |"
        )
    lines += [
        "",
        f"Loading a {SECONDS} s 48 kHz file at 16 kHz: polydiff `load_audio` {load_ours:.3f} s, "
        f"`librosa.load` {load_librosa:.3f} s.",
        f"Streaming reader blocks vs whole-file resampling: max abs difference {block_error:.2e}.",
        "soxr's own `ResampleStream` (HQ) fed the same signal in sequential blocks vs whole-file "
        f"soxr: max abs difference {soxr_block_error:.2e}.",
        "",
        "Goals: " + ", ".join(f"{k}: {v}" for k, v in goals.items()),
        "",
    ]
    (out / "speech-resample.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0
