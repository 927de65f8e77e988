"""Synthetic speech with the espeak-ng formant synthesizer (random voices, rates, pitches).

espeak-ng is a system program (`apt-get install espeak-ng`), not a Python package; every entry
point raises a FileNotFoundError with that hint when the binary is missing.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import asdict, dataclass

import numpy as np
import soundfile as sf

from polydiff.speech.audio import resample

# Built-in English dialects (no mbrola voices, which need extra packages) and voice variants.
DIALECTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan")
VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")

_WORDS = {
    "adj": "quiet bright small heavy early green narrow gentle rapid silver broken distant warm "
    "simple careful sudden ancient pale busy hollow".split(),
    "noun": "river garden window teacher engine village letter market bridge captain doctor "
    "mountain kitchen station problem morning picture student farmer forest signal ocean "
    "lantern wagon harbor".split(),
    "verb": "carried followed opened painted answered noticed covered visited measured "
    "watched repaired crossed gathered described remembered".split(),
    "adv": "slowly quickly quietly again later carefully today yesterday suddenly often".split(),
    "prep": "near behind under across beside beyond toward inside".split(),
    "name": "Anna Peter Maria James Clara Victor Helen Oscar Laura Daniel".split(),
}
_TEMPLATES = (
    "The {adj} {noun} {verb} the {noun2} {adv}.",
    "{name} {verb} a {adj} {noun} {prep} the {noun2}.",
    "Yesterday the {noun} {verb} the {adj} {noun2} {prep} the {noun3}.",
    "Why did {name} leave the {adj} {noun} {prep} the {noun2}?",
    "A {adj} {noun} and a {adj2} {noun2} were {adv} {verb} by {name}.",
    "Please bring the {noun} {prep} the {adj} {noun2} before the {noun3} closes.",
)


@dataclass(frozen=True)
class Voice:
    """espeak-ng voice settings: dialect, variant, rate (words per minute), pitch (0-99)."""

    dialect: str = "en-us"
    variant: str = ""
    rate: int = 160
    pitch: int = 50

    @property
    def name(self) -> str:
        return f"{self.dialect}+{self.variant}" if self.variant else self.dialect

    def to_dict(self) -> dict:
        return asdict(self)


def espeak_binary() -> str:
    """Path of the espeak-ng executable, or FileNotFoundError with the install hint."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise FileNotFoundError(
            "espeak-ng not found on PATH; the speech generator needs it "
            "(Debian/Ubuntu: `apt-get install espeak-ng`)"
        )
    return exe


def random_voice(rng: np.random.Generator) -> Voice:
    """A random dialect and variant, rate U{130..200} wpm, pitch U{25..75}."""
    return Voice(
        dialect=str(rng.choice(DIALECTS)),
        variant=str(rng.choice(VARIANTS)),
        rate=int(rng.integers(130, 201)),
        pitch=int(rng.integers(25, 76)),
    )


def random_sentence(rng: np.random.Generator) -> str:
    """A random English sentence from built-in templates and a small vocabulary."""
    pick = {k: str(rng.choice(v)) for k, v in _WORDS.items()}
    pick.update(
        adj2=str(rng.choice(_WORDS["adj"])),
        noun2=str(rng.choice(_WORDS["noun"])),
        noun3=str(rng.choice(_WORDS["noun"])),
    )
    return str(rng.choice(_TEMPLATES)).format(**pick)


def synthesize(text: str, voice: Voice = Voice(), sample_rate: int = 16000) -> np.ndarray:
    """Speak `text` with espeak-ng; returns float32 mono audio at `sample_rate` (from 22.05 kHz).

    Leading/trailing silence beyond 0.1 s is trimmed so crops contain speech.
    """
    if not text.strip():
        raise ValueError("synthesize: empty text")
    cmd = [espeak_binary(), "-v", voice.name, "-s", str(voice.rate), "-p", str(voice.pitch)]
    proc = subprocess.run([*cmd, "--stdout", text], capture_output=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError(
            f"espeak-ng failed for voice {voice.name!r}: {proc.stderr.decode(errors='replace')}"
        )
    audio, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32")
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    active = np.flatnonzero(np.abs(audio) > 1e-3 * np.max(np.abs(audio)))
    if active.size == 0:
        raise RuntimeError(f"espeak-ng produced silence for {text!r} with voice {voice.name!r}")
    margin = int(0.1 * sr)
    audio = audio[max(active[0] - margin, 0) : active[-1] + margin]
    return resample(audio, sr, sample_rate)
