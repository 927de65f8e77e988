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
- :func:`score_samples`: gen-PPL (with the standard error of its log) and entropy of samples.
- :func:`held_out_rows` / :func:`held_out_scores`: held-out text at a model's context, and its
  perplexity there (exact or a bound, by model) with the unigram entropy of the text.
- :func:`check_reference`: a gen-PPL reference must be a causal LM with the same tokenizer.
- :func:`compare_solvers`: prompted samples and gen-PPL / entropy of several core solvers;
  :func:`showcase` (with :func:`showcase_markdown`): that next to the bound on held-out text.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from polydiff.core.io import atomic_path
from polydiff.text.ar import AR
from polydiff.text.data import prepare_corpus
from polydiff.text.losses import HELD_OUT_TIME_SAMPLES
from polydiff.text.method import TextMethod
from polydiff.text.metrics import CausalLM, generative_perplexity, unigram_entropy
from polydiff.text.sampling import SampleResult

__all__ = [
    "FrontierPoint",
    "check_reference",
    "compare_solvers",
    "frontier_at_entropy",
    "frontier_sweep",
    "held_out_entropy",
    "held_out_rows",
    "held_out_scores",
    "method_frontier",
    "method_sampler",
    "plot_frontier",
    "score_samples",
    "showcase",
    "showcase_markdown",
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
            s = score_samples(
                result, reference, bos_id=bos_id, mask_id=mask_id, ignore_ids=ignore_ids
            )
            point = FrontierPoint(
                float(temperature), float(top_p), s["gen_ppl"], s["entropy"], s["nfe"],
                s["tokens_per_second"],
            )  # fmt: skip
            points.append(point)
    return points


def score_samples(result: SampleResult, reference: CausalLM, **options: Any) -> dict[str, float]:
    """Gen-PPL of samples under ``reference`` with the mean per-sample unigram entropy (always
    together), the standard error of log gen-PPL over the samples (the noise a comparison must
    beat; NaN for one sample), network evaluations per sample and throughput. ``options``:
    those of :func:`~polydiff.text.metrics.generative_perplexity` (``bos_id``, ``mask_id``,
    ``ignore_ids``: also left out of the entropy)."""
    tokens, ignore_ids = result.tokens, options.get("ignore_ids", ())
    gp = generative_perplexity(tokens, reference, **options)
    per_token = gp.nll / gp.n_tokens.clamp_min(1)
    se = float(per_token.std() / len(per_token) ** 0.5) if len(per_token) > 1 else math.nan
    return {
        "gen_ppl": gp.ppl,
        "log_gen_ppl_se": se,
        "entropy": float(unigram_entropy(tokens, ignore_ids).mean()),
        "nfe": result.nfe,
        "tokens_per_second": result.tokens_per_second,
    }


def method_sampler(
    method: TextMethod,
    n: int,
    length: int | None = None,
    generator: torch.Generator | None = None,
    **options: Any,
) -> SampleFn:
    """``sample_fn(temperature, top_p)`` of :func:`frontier_sweep`: ``n`` samples of ``method``
    with its sampling ``options`` (the same for every method: see
    :func:`~polydiff.text.method.sampling_options`)."""

    def sample_fn(temperature: float, top_p: float) -> SampleResult:
        given = {**options, "temperature": temperature, "top_p": top_p}
        return method.sample(n, length, generator=generator, **given)

    return sample_fn


def method_frontier(
    method: TextMethod,
    reference: AR,
    n: int,
    length: int | None = None,
    *,
    temperatures: Sequence[float] = (1.0,),
    top_ps: Sequence[float] = (1.0,),
    generator: torch.Generator | None = None,
    **options: Any,
) -> list[FrontierPoint]:
    """:func:`frontier_sweep` of ``n`` samples of ``method`` (:func:`method_sampler`) scored by
    the causal LM ``reference``, masks and padding excluded as the tokenizer says."""
    tok = method.tokenizer
    return frontier_sweep(
        method_sampler(method, n, length, generator, **options), reference.net,
        temperatures=temperatures, top_ps=top_ps, mask_id=tok.mask_id, ignore_ids=(tok.pad_id,),
    )  # fmt: skip


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
        for i, p in enumerate(points):  # labels alternate above / below their point
            note = f"T={p.temperature:g}" + ("" if p.top_p >= 1 else f",p={p.top_p:g}")
            ax.annotate(note, (p.entropy, p.gen_ppl), fontsize=6, alpha=0.7,
                        textcoords="offset points", xytext=(3, 4 if i % 2 else -9))  # fmt: skip
    if reference_entropy is not None and math.isfinite(reference_entropy):
        ax.axvline(reference_entropy, color="gray", ls="--", lw=1, label="held-out text")
    ax.set_yscale("log")
    readable_log_ticks(ax.yaxis, [p.gen_ppl for pts in curves.values() for p in pts])
    ax.set_xlabel("mean unigram entropy per sample (nats)")
    ax.set_ylabel("generative perplexity")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=120)
    plt.close(fig)
    return path


def readable_log_ticks(axis, values: Sequence[float]) -> None:
    """Labelled ticks inside the data on a log axis that spans less than two decades
    (matplotlib labels only the powers of ten: 10 alone when the points sit at 16-18)."""
    from matplotlib.ticker import MaxNLocator, NullFormatter, ScalarFormatter

    finite = [v for v in values if v > 0 and math.isfinite(v)]
    if finite and max(finite) / min(finite) < 100:
        axis.set_major_locator(MaxNLocator(nbins=5))
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())


def held_out_entropy(tokens: torch.Tensor, ignore_ids: Sequence[int] = ()) -> float:
    """Mean per-sequence unigram entropy of held-out text: the target the samples should reach."""
    return float(unigram_entropy(tokens, ignore_ids).mean())


def held_out_rows(
    method: TextMethod,
    source: str | Path,
    split: str = "validation",
    *,
    max_rows: int | None = None,
    seed: int = 0,
    text_field: str = "text",
    cache_dir: str | Path | None = None,
) -> torch.Tensor:
    """The first ``max_rows`` rows of ``split`` of ``source``, packed at the model's context with
    its tokenizer (the same ``seed`` as training gives the same document split)."""
    corpus = prepare_corpus(
        source, method.tokenizer, method.context, seed=seed, text_field=text_field,
        cache_dir=cache_dir,
    )  # fmt: skip
    if split not in corpus.splits:
        raise ValueError(f"split must be one of {'|'.join(corpus.splits)}, got {split!r}")
    return corpus[split][:max_rows]


def held_out_scores(
    method: TextMethod,
    rows: torch.Tensor,
    *,
    batch_size: int = 32,
    n_time_samples: int = HELD_OUT_TIME_SAMPLES,
    reference: AR | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """What a model scores on held-out ``rows``: ``rows`` (their number), its perplexity
    (``ppl``, exact, or ``ppl_bound``: :meth:`TextMethod.held_out_perplexity`),
    ``reference_ppl`` (the exact perplexity of a ``reference`` causal LM, if given) and
    ``held_out_entropy`` (the mean unigram entropy the samples should reach)."""
    batches = rows.split(batch_size)
    scores: dict[str, Any] = {"rows": rows.shape[0]}
    scores.update(
        method.held_out_perplexity(batches, n_time_samples=n_time_samples, generator=generator)
    )
    if reference is not None:
        scores["reference_ppl"] = reference.perplexity(batches)
    scores["held_out_entropy"] = held_out_entropy(rows, (method.tokenizer.pad_id,))
    return scores


def check_reference(reference: TextMethod, method: TextMethod) -> AR:
    """``reference`` as the gen-PPL reference of ``method``'s samples: a causal LM (an ``ar``
    model) with the same tokenizer, else a ValueError saying which it is not."""
    if not isinstance(reference, AR):
        raise ValueError(f"a {reference.name} model, not ar: gen-PPL needs a causal LM")
    if reference.tokenizer.fingerprint() != method.tokenizer.fingerprint():
        raise ValueError(
            f"trained with another tokenizer than the {method.name} model (vocabularies "
            f"{reference.tokenizer.vocab_size} and {method.tokenizer.vocab_size}); gen-PPL "
            "needs the same tokenizer"
        )
    return reference


def compare_solvers(
    method: TextMethod,
    reference: AR,
    solvers: Sequence[str],
    *,
    prompts: Sequence[str] = (),
    n_per_prompt: int = 1,
    n_gen: int = 16,
    temperatures: Sequence[float] = (1.0,),
    top_ps: Sequence[float] = (1.0,),
    length: int | None = None,
    generator: torch.Generator | None = None,
    **options: Any,
) -> tuple[dict[str, list[str]], dict[str, list[FrontierPoint]]]:
    """Core solvers side by side: each continues every prompt (``n_per_prompt`` decoded samples
    each) and draws ``n_gen`` unprompted samples per frontier point, scored by ``reference``
    (gen-PPL and entropy); the first solver sweeps ``temperatures`` x ``top_ps`` (with T = 1,
    top-p = 1 added), the others sample at T = 1, top-p = 1. ``options`` are the method's
    other sampling options (e.g. ``steps``). Returns (texts by solver, frontier by solver)."""
    samples: dict[str, list[str]] = {}
    points: dict[str, list[FrontierPoint]] = {}
    for solver in solvers:
        texts = []
        for prompt in prompts:
            result = method.sample(
                n_per_prompt, length, solver=solver, prompt=prompt or None, generator=generator,
                **options,
            )  # fmt: skip
            texts += method.decode(result.tokens)
        samples[solver] = texts
        temps, nuclei = [1.0], [1.0]
        if solver == solvers[0]:
            temps, nuclei = sorted({*temperatures, 1.0}), sorted({*top_ps, 1.0})
        points[solver] = method_frontier(
            method, reference, n_gen, length, temperatures=temps, top_ps=nuclei,
            generator=generator, solver=solver, **options,
        )  # fmt: skip
    return samples, points


def showcase(
    method: TextMethod,
    reference: AR,
    rows: torch.Tensor,
    solvers: Sequence[str],
    *,
    batch_size: int = 32,
    seed: int = 0,
    **compare: Any,
) -> tuple[dict[str, Any], dict[str, list[FrontierPoint]]]:
    """A diffusion model at a glance: its bound on held-out ``rows`` next to the ``reference``'s
    exact perplexity (:func:`held_out_scores`, time draws from torch's global generator seeded
    with ``seed``) and :func:`compare_solvers` (``compare``: its options, e.g. ``prompts``,
    ``steps``) on a generator seeded with ``seed``. Returns the metrics (``held_out``, each
    solver's scores at T = 1 ``samplers``, ``frontier``, ``samples``) and the frontier points."""
    torch.manual_seed(seed)
    held = held_out_scores(method, rows, batch_size=batch_size, reference=reference)
    held["entropy"] = held.pop("held_out_entropy")
    generator = torch.Generator().manual_seed(seed)
    samples, points = compare_solvers(method, reference, solvers, generator=generator, **compare)
    at_one = {s: next(p for p in pts if p.temperature == 1 and p.top_p == 1)
              for s, pts in points.items()}  # fmt: skip
    metrics = {
        "held_out": held,
        "samplers": {s: p.to_dict() for s, p in at_one.items()},
        "frontier": {s: [p.to_dict() for p in pts] for s, pts in points.items()},
        "samples": samples,
    }
    return metrics, points


def showcase_markdown(metrics: Mapping[str, Any]) -> str:
    """Markdown of :func:`showcase`'s metrics (with ``checkpoint``, ``reference``, ``method``,
    ``split`` and ``steps`` added): the bound, the solvers' gen-PPL + entropy, one sample each."""
    b = metrics["held_out"]
    lines = [
        f"Model `{Path(metrics['checkpoint']).name}` ({metrics['method']}): perplexity bound "
        f"<= {b['ppl_bound']:.3f} on {b['rows']} held-out {metrics['split']} sequences. "
        f"Gen-PPL under the AR reference `{Path(metrics['reference']).name}`, whose own "
        f"perplexity on the same text is {b['reference_ppl']:.3f} (held-out unigram entropy "
        f"{b['entropy']:.3f} nats). Gen-PPL is only meaningful next to the entropy.",
        "",
        f"| sampler ({metrics['steps']} steps; first_hitting: one token per step), T=1 "
        "| gen-PPL | entropy | nfe | tokens/s |",
        "|---|---|---|---|---|",
    ]
    for name, s in metrics["samplers"].items():
        lines.append(f"| {name} | {s['gen_ppl']:.2f} | {s['entropy']:.3f} | {s['nfe']:.0f} | "
                     f"{s['tokens_per_second']:.0f} |")  # fmt: skip
    lines += ["", "Samples (all in `text/samples/`):", ""]
    for name, texts in metrics["samples"].items():
        lines += [f"{name}:", "```", texts[0].strip()[:400], "```"]
    return "\n".join(lines)
