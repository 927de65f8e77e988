"""Reader for paired enhancement corpora laid out as `{train,valid,test}/{clean,noisy}/*.wav|flac`.

This is the layout of the SGMSE+ recipes for VoiceBank-DEMAND and WSJ0-CHiME3 (Richter et al.,
2023, Sec. V-A): a clean and a noisy file with the same name form a pair. Training examples are
random crops of (num_frames - 1) * hop samples (255 x 128 = 32,640 at 16 kHz, giving 256 STFT
frames), and both signals are divided by max|noisy| so the clean/noisy power ratio is kept.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from polydiff.speech.audio import AUDIO_EXTENSIONS, PRESETS, SpecConfig, load_audio, to_spec

SUBSETS = ("train", "valid", "test")


@dataclass(frozen=True)
class Pair:
    name: str
    clean: Path
    noisy: Path
    frames: int  # length in samples at the files' own rate
    sample_rate: int


def _audio_files(folder: Path) -> dict[str, Path]:
    return {
        p.relative_to(folder).as_posix(): p
        for p in sorted(folder.rglob("*"))
        if p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith(".")
    }


def _info(path: Path) -> sf._SoundFileInfo:
    try:
        return sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise ValueError(f"{path}: unreadable audio file ({err})") from err


def list_pairs(root: str | os.PathLike, subset: str, check: bool = True) -> list[Pair]:
    """Pairs of `root/subset/clean/<name>` and `root/subset/noisy/<name>` (sorted by name).

    Raises FileNotFoundError for a missing folder and ValueError for an empty folder, a file
    without its partner, or (when `check`, reading only the headers) a pair whose two files differ
    in length or sample rate.
    """
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
    base = Path(root) / subset
    dirs = {kind: base / kind for kind in ("clean", "noisy")}
    for d in dirs.values():
        if not d.is_dir():
            raise FileNotFoundError(
                f"missing folder {d} (expected {{train,valid,test}}/{{clean,noisy}})"
            )
    clean, noisy = _audio_files(dirs["clean"]), _audio_files(dirs["noisy"])
    if not clean and not noisy:
        raise ValueError(f"{base}: no .wav/.flac files in clean/ and noisy/")
    for have, other, kind in ((clean, noisy, "noisy"), (noisy, clean, "clean")):
        missing = sorted(set(have) - set(other))
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise ValueError(
                f"{base}: {len(missing)} file(s) without a partner in {kind}/: {shown}"
            )
    pairs = []
    for name in clean:
        frames, rate = -1, -1
        if check:
            ic, in_ = _info(clean[name]), _info(noisy[name])
            if ic.samplerate != in_.samplerate:
                raise ValueError(
                    f"{base}: pair {name!r} has different sample rates "
                    f"(clean {ic.samplerate} Hz, noisy {in_.samplerate} Hz)"
                )
            if ic.frames != in_.frames:
                raise ValueError(
                    f"{base}: pair {name!r} has different lengths "
                    f"(clean {ic.frames}, noisy {in_.frames} samples)"
                )
            frames, rate = ic.frames, ic.samplerate
        pairs.append(Pair(name, clean[name], noisy[name], frames, rate))
    return pairs


def crop_or_pad(
    clean: np.ndarray, noisy: np.ndarray, length: int, start: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """The same `length`-sample window of both signals; shorter signals are zero-padded centrally.

    `start=None` takes the central window (validation/test), else the window at `start`.
    """
    n = clean.shape[-1]
    if n < length:
        pad = length - n
        widths = (pad // 2, pad - pad // 2)
        return np.pad(clean, widths), np.pad(noisy, widths)
    if start is None:
        start = (n - length) // 2
    return clean[start : start + length], noisy[start : start + length]


NORMALIZE = ("noisy", "noisy_file", "clean", "none")


class PairedSpeech(Dataset):
    """Clean/noisy pairs of one subset, cropped, normalised by max|noisy| and (optionally) STFT'd.

    `normalize="noisy"` divides by the crop's noisy peak (the papers' recipe); `"noisy_file"` by
    the whole file's noisy peak, the level enhancement gives the network (it normalises whole
    files), so a crop's peak is at most 1 as at inference; `"clean"` by the crop's clean peak.

    Each item is a dict: "clean", "noisy" (complex compressed spectrograms (F, num_frames) when
    `output="spec"`, else waveforms (T,)), "scale" (the max|noisy| both were divided by) and "name".
    Files at another sample rate are resampled to `cfg.sample_rate`; multi-channel files are
    downmixed to mono (the `load_audio` default policy). `crop="random"` draws the window start
    from torch's RNG (seeded per DataLoader worker), `"center"` takes the middle, `"none"` keeps
    the whole file (batch size 1).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        subset: str = "train",
        cfg: SpecConfig = PRESETS["16k"],
        num_frames: int = 256,
        crop: Literal["random", "center", "none"] = "random",
        normalize: Literal["noisy", "noisy_file", "clean", "none"] = "noisy",
        output: Literal["spec", "wave"] = "spec",
        check: bool = True,
    ) -> None:
        if crop not in ("random", "center", "none"):
            raise ValueError(f"crop must be 'random', 'center' or 'none', got {crop!r}")
        if normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
        if output not in ("spec", "wave"):
            raise ValueError(f"output must be 'spec' or 'wave', got {output!r}")
        if num_frames < 2:
            raise ValueError(f"num_frames must be >= 2, got {num_frames}")
        self.pairs = list_pairs(root, subset, check=check)
        self.cfg, self.crop, self.normalize, self.output = cfg, crop, normalize, output
        self.num_samples = (num_frames - 1) * cfg.hop_length  # center=True gives num_frames

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict:
        pair = self.pairs[i]
        sr = self.cfg.sample_rate
        clean, _ = load_audio(pair.clean, sr, allow_silence=True)
        noisy, _ = load_audio(pair.noisy, sr)
        if clean.shape != noisy.shape:  # when `check=False` skipped the header comparison
            raise ValueError(f"pair {pair.name!r}: lengths differ ({clean.size} vs {noisy.size})")
        file_peak = float(np.max(np.abs(noisy)))
        if self.crop != "none":
            start = None
            if self.crop == "random" and clean.size > self.num_samples:
                start = int(torch.randint(0, clean.size - self.num_samples + 1, ()).item())
            clean, noisy = crop_or_pad(clean, noisy, self.num_samples, start)
        ref = {"noisy": noisy, "clean": clean}.get(self.normalize)
        scale = float(np.max(np.abs(ref))) if ref is not None else 1.0
        if self.normalize == "noisy_file":
            scale = file_peak
        if scale == 0.0:
            raise ValueError(f"pair {pair.name!r}: the {self.normalize} crop is silent")
        x = torch.from_numpy(clean / scale)
        y = torch.from_numpy(noisy / scale)
        if self.output == "spec":
            x, y = to_spec(x, self.cfg), to_spec(y, self.cfg)
        return {"clean": x, "noisy": y, "scale": scale, "name": pair.name}
