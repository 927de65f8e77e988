"""Evaluation of samplers the way the field reports them.

- :func:`frontier_sweep`: a temperature / top-p sweep; each point has the generative perplexity
  under a reference causal model *and* the mean per-sample unigram entropy, the two axes of the
  quality-diversity frontier (gen-PPL alone rewards low-entropy repetition: Zheng et al., 2024,
  "Masked Diffusion Models are Secretly Time-Agnostic Masked Models and Exploit Inaccurate
  Categorical Sampling", Sec. 4), plus network calls and throughput.
- :func:`frontier_at_entropy`: a sampler's gen-PPL (and temperature) at a given entropy, read
  on its measured frontier: how two samplers are compared "at equal entropy".
- :func:`plot_frontier`: gen-PPL vs entropy, one curve per sampler (matplotlib, imported lazily:
  it is not a dependency of polydiff-text).
- :func:`throughput`: tokens per second and network evaluations of a sampling function.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from polydiff.core.io import atomic_path
from polydiff.text.metrics import CausalLM, generative_perplexity, unigram_entropy
from polydiff.text.sampling import SampleResult

__all__ = [
    "FrontierPoint",
    "frontier_at_entropy",
    "frontier_sweep",
    "held_out_entropy",
    "plot_frontier",
    "throughput",
]

SampleFn = Callable[[float, float], SampleResult]
"""``sample_fn(temperature, top_p) -> SampleResult``, e.g.
``lambda T, p: method.sample(64, steps=64, temperature=T, top_p=p)``."""


@dataclass
class FrontierPoint:
    temperature: float
    top_p: float
    gen_ppl: float  # pooled generative perplexity under the reference model
    entropy: float  # mean per-sample unigram entropy (nats)
    nfe: float  # network evaluations per sample
    tokens_per_second: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def frontier_sweep(
    sample_fn: SampleFn,
    reference: CausalLM,
    *,
    temperatures: Sequence[float] = (0.7, 0.8, 0.9, 1.0),
    top_ps: Sequence[float] = (1.0,),
    bos_id: int | None = None,
    mask_id: int | None = None,
    ignore_ids: Sequence[int] = (),
) -> list[FrontierPoint]:
    """Sample at every (temperature, top_p) and measure gen-PPL and entropy of the samples.

    ``ignore_ids`` (e.g. PAD) are neither scored nor counted in the entropy; ``mask_id`` rejects
    unfinished samples (:func:`~polydiff.text.metrics.generative_perplexity`).
    """
    if not temperatures or not top_ps:
        raise ValueError("frontier_sweep needs at least one temperature and one top_p")
    points = []
    for temperature in temperatures:
        for top_p in top_ps:
            result = sample_fn(float(temperature), float(top_p))
            tokens = result.tokens
            ppl = generative_perplexity(
                tokens, reference, bos_id=bos_id, mask_id=mask_id, ignore_ids=ignore_ids
            ).ppl
            entropy = float(unigram_entropy(tokens, ignore_ids).mean())
            point = FrontierPoint(
                float(temperature), float(top_p), ppl, entropy, result.nfe, result.tokens_per_second
            )
            points.append(point)
    return points


def frontier_at_entropy(points: Sequence[Mapping[str, float]], entropy: float) -> dict[str, float]:
    """gen-PPL and temperature at ``entropy`` on a sampler's frontier, read on the segment
    between the two measured points (``gen_ppl``, ``entropy``, ``temperature``) whose entropies
    bracket it (else the nearest two): log gen-PPL and temperature linear in entropy, the local
    shape of the frontier. ``extrapolation`` is how far (nats) ``entropy`` lies outside the
    measured range: a reading far outside it is not to be trusted."""
    pts = sorted(points, key=lambda p: p["entropy"])
    if len(pts) < 2 or pts[0]["entropy"] == pts[-1]["entropy"]:
        raise ValueError("frontier_at_entropy needs points at two or more distinct entropies")
    k = sum(p["entropy"] < entropy for p in pts)
    p0, p1 = pts[min(max(k - 1, 0), len(pts) - 2)], pts[min(max(k, 1), len(pts) - 1)]
    w = (entropy - p0["entropy"]) / (p1["entropy"] - p0["entropy"])
    log_ppl = (1 - w) * math.log(p0["gen_ppl"]) + w * math.log(p1["gen_ppl"])
    return {
        "gen_ppl": math.exp(log_ppl),
        "temperature": (1 - w) * p0["temperature"] + w * p1["temperature"],
        "extrapolation": max(pts[0]["entropy"] - entropy, entropy - pts[-1]["entropy"], 0.0),
    }


def throughput(sample_fn: Callable[[], SampleResult], repeats: int = 1) -> dict[str, float]:
    """Tokens per second (generated tokens / wall time, summed over ``repeats`` runs), network
    evaluations per sample and batched network calls of a sampling function."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats} must be at least 1")
    tokens, seconds, nfe, calls = 0, 0.0, 0.0, 0
    for _ in range(repeats):
        result = sample_fn()
        tokens += result.tokens.numel()
        seconds += result.seconds
        nfe, calls = result.nfe, result.network_calls
    return {
        "tokens_per_second": tokens / max(seconds, 1e-9),
        "seconds": seconds / repeats,
        "nfe": nfe,
        "network_calls": calls,
    }


def plot_frontier(
    curves: Mapping[str, Iterable[FrontierPoint]],
    path: str | Path,
    *,
    title: str = "gen-PPL vs entropy",
    reference_entropy: float | None = None,
) -> Path:
    """Plot gen-PPL (log scale) against mean unigram entropy, one labelled curve per sampler,
    each point annotated with its temperature / top-p; written atomically to ``path`` (format
    from the suffix, e.g. .png / .svg / .pdf). ``reference_entropy`` (e.g. of held-out text) is
    drawn as a vertical line: samples far left of it are repetitive."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(
            "plot_frontier needs matplotlib, which polydiff-text does not install: "
            "pip install matplotlib"
        ) from err
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, points in curves.items():
        points = sorted(points, key=lambda p: p.entropy)
        if not points:
            raise ValueError(f"plot_frontier: curve {label!r} has no points")
        ax.plot([p.entropy for p in points], [p.gen_ppl for p in points], "o-", label=label)
        for p in points:
            note = f"T={p.temperature:g}" + ("" if p.top_p >= 1 else f",p={p.top_p:g}")
            ax.annotate(note, (p.entropy, p.gen_ppl), fontsize=6, alpha=0.7)
    if reference_entropy is not None and math.isfinite(reference_entropy):
        ax.axvline(reference_entropy, color="gray", ls="--", lw=1, label="held-out text")
    ax.set_yscale("log")
    ax.set_xlabel("mean unigram entropy per sample (nats)")
    ax.set_ylabel("generative perplexity")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=120)
    plt.close(fig)
    return path


def held_out_entropy(tokens: torch.Tensor, ignore_ids: Sequence[int] = ()) -> float:
    """Mean per-sequence unigram entropy of held-out text: the target the samples should reach."""
    return float(unigram_entropy(tokens, ignore_ids).mean())
