"""Reverberant/dry pairs for dereverberation with pyroomacoustics' image-source method.

Following the WSJ0-Reverb recipe of SGMSE+ (Richter et al., 2023, Sec. V-A): a shoebox room of
5–15 x 5–15 x 2–6 m with T60 in 0.4–1.0 s; the input is the reverberant render and the target the
direct-path ("dry") render of the same source/microphone geometry, so both share delay and
distance attenuation. Absorption and image order come from Sabine's formula
(`pyroomacoustics.inverse_sabine`, Allen & Berkley, 1979); the order is capped (`max_order`) to
bound the cost in small, very reverberant rooms (the tail beyond the cap is then missing; the
measured T60 is reported so users can filter).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Room:
    dims: tuple[float, float, float]
    t60: float
    source: tuple[float, float, float]
    mic: tuple[float, float, float]

    def to_dict(self) -> dict:
        return asdict(self)


def random_room(
    rng: np.random.Generator,
    t60_range: tuple[float, float] = (0.4, 1.0),
    dims_low: tuple[float, float, float] = (5.0, 5.0, 2.0),
    dims_high: tuple[float, float, float] = (15.0, 15.0, 6.0),
    margin: float = 0.5,
    min_distance: float = 1.0,
) -> Room:
    """A random room, T60, and source/mic positions at least `margin` from the walls and
    `min_distance` apart (1–1.8 m height for both, as for seated/standing talkers)."""
    dims = rng.uniform(dims_low, dims_high)
    lo = np.array([margin, margin, min(1.0, dims[2] / 2)])
    hi = np.array([dims[0] - margin, dims[1] - margin, min(1.8, dims[2] - margin)])
    for _ in range(100):
        src, mic = rng.uniform(lo, hi), rng.uniform(lo, hi)
        if np.linalg.norm(src - mic) >= min_distance:
            break
    return Room(
        tuple(map(float, dims)),
        float(rng.uniform(*t60_range)),
        tuple(map(float, src)),
        tuple(map(float, mic)),
    )


def _render(room: Room, signal: np.ndarray, sr: int, max_order: int):
    """(mic signal cut to len(signal), RIR, image order used)."""
    import pyroomacoustics as pra

    absorption, order = pra.inverse_sabine(room.t60, list(room.dims))
    order = min(order, max_order)
    shoebox = pra.ShoeBox(
        list(room.dims), fs=sr, materials=pra.Material(absorption), max_order=order
    )
    shoebox.add_source(list(room.source), signal=signal)
    shoebox.add_microphone(list(room.mic))
    shoebox.simulate()
    return shoebox.mic_array.signals[0, : signal.size], np.asarray(shoebox.rir[0][0]), order


def reverberate(
    dry: np.ndarray, sample_rate: int, room: Room, max_order: int = 40
) -> tuple[np.ndarray, np.ndarray, dict]:
    """(reverberant, direct, info) renders of `dry`, both cut to len(dry) samples.

    info holds the room, the image order used and the T60 measured on the simulated RIR.
    """
    import pyroomacoustics as pra

    dry = np.asarray(dry, dtype=np.float64)
    if dry.ndim != 1 or dry.size == 0:
        raise ValueError(f"reverberate: expected non-empty mono audio, got shape {dry.shape}")
    reverberant, rir, order = _render(room, dry, sample_rate, max_order)
    direct, _, _ = _render(room, dry, sample_rate, 0)
    info = {
        **room.to_dict(),
        "image_order": order,
        "t60_measured": float(pra.experimental.measure_rt60(rir, fs=sample_rate)),
    }
    return reverberant, direct, info
