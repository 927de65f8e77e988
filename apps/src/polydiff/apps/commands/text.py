"""Text: masked, uniform and block discrete diffusion language models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from polydiff.apps.registry import ConfigError, StageResult, demo_stage, verb

METHOD_NAMES = ("mdlm", "udlm", "blockgen", "ar")
SPLITS = ("train", "reference", "validation")


# --- shared helpers -----------------------------------------------------------------------------


def _check_positive(cfg: DictConfig, *keys: str) -> None:
    """ConfigError (exit 2) for every dotted key whose value is not a positive integer."""
    for key in keys:
        value = OmegaConf.select(cfg, key)
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key} must be a positive integer, got {value!r}")


def _check_sampling(s: DictConfig) -> None:
    if not s.temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {s.temperature}")
    if not 0 < s.top_p <= 1:
        raise ConfigError(f"top_p must be in (0, 1], got {s.top_p}")


def _prepare_data(cfg: DictConfig, out_dir: Path):
    """Tokenizer and packed splits from `cfg.data` / `cfg.tokenizer`.

    With `data.prepared` (a `polydiff text data` run folder) its tokenizer and token cache are
    reused; otherwise the tokenizer is made (or loaded from `tokenizer.dir`) and saved in
    `out_dir/tokenizer`, and the packed splits are cached in `out_dir/cache`.
    """
    from polydiff.text.data import load_source, load_tokenizer, make_tokenizer, prepare_corpus

    _check_positive(cfg, "data.seq_len")
    if cfg.data.seq_len < 2:
        raise ConfigError(f"data.seq_len must be >= 2 (BOS + one token), got {cfg.data.seq_len}")
    if cfg.tokenizer.kind not in ("byte", "bpe"):
        raise ConfigError(f"tokenizer.kind must be byte or bpe, got {cfg.tokenizer.kind!r}")
    prepared = cfg.data.get("prepared")
    tok_dir, cache_dir = out_dir / "tokenizer", out_dir / "cache"
    try:
        if prepared is not None:
            prepared = Path(prepared)
            if not (prepared / "data.json").is_file():
                raise ConfigError(
                    f"data.prepared={prepared}: no data.json there; give the folder of a "
                    "`polydiff text data` run"
                )
            tok, cache_dir = load_tokenizer(prepared / "tokenizer"), prepared / "cache"
        elif cfg.tokenizer.dir is not None:
            tok = load_tokenizer(cfg.tokenizer.dir)
            tok.save(tok_dir)
        else:
            texts = load_source(cfg.data.source, cfg.data.text_field)
            tok = make_tokenizer(
                cfg.tokenizer.kind, texts, vocab_size=cfg.tokenizer.vocab_size, directory=tok_dir
            )
        corpus = prepare_corpus(
            cfg.data.source, tok, cfg.data.seq_len, seed=cfg.seed,
            text_field=cfg.data.text_field, cache_dir=cache_dir,
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(str(err)) from None
    return tok, corpus


def _load(folder: Any, key: str, device: str = "cpu"):
    """A method saved by `polydiff text train` (its `export` folder, or the run folder)."""
    from polydiff.text.method import load_method, shipped_checkpoint

    if folder is None and key == "checkpoint":  # the model shipped with polydiff-text
        folder = shipped_checkpoint()
    if folder is None:
        raise ConfigError(
            f"{key} is required: the export folder of a `polydiff text train` run "
            f"(<run>/train/export), e.g. {key}=runs/text/train/<time>/train/export"
        )
    folder = Path(folder)
    if (folder / "train" / "export").is_dir():  # a train run folder: use its export
        folder = folder / "train" / "export"
    try:
        return load_method(folder, device=device)
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(f"{key}={folder}: {err}") from None


def _checkpoint_name(folder: Any) -> str:
    """The checkpoint a run used, for its records (None means the shipped model)."""
    from polydiff.text.method import SHIPPED_CHECKPOINT

    return str(SHIPPED_CHECKPOINT if folder is None else folder)


def _load_reference(folder: Any, method, checkpoint: Any):
    """The AR gen-PPL reference (``shipped``: the one shipped with polydiff-text); it must be an
    AR model with the tokenizer of ``method``."""
    from polydiff.text.method import shipped_reference

    reference = _load(shipped_reference() if folder == "shipped" else folder, "reference")
    if reference.name != "ar":
        raise ConfigError(f"reference={folder}: a {reference.name} model, not ar")
    if reference.tokenizer.fingerprint() != method.tokenizer.fingerprint():
        raise ConfigError(
            f"reference={folder}: trained with another tokenizer than checkpoint="
            f"{checkpoint} (vocabularies {reference.tokenizer.vocab_size} and "
            f"{method.tokenizer.vocab_size}); gen-PPL needs the same tokenizer"
        )
    return reference


def _held_out(cfg: DictConfig, method, run_dir: Path):
    """The first ``cfg.max_rows`` rows of ``cfg.data.split``, packed at the model's context."""
    from polydiff.text.data import prepare_corpus

    if cfg.data.split not in SPLITS:
        raise ConfigError(f"data.split must be one of {'|'.join(SPLITS)}, got {cfg.data.split!r}")
    try:
        corpus = prepare_corpus(
            cfg.data.source, method.tokenizer, method.config.transformer.max_seq_len,
            seed=cfg.seed, text_field=cfg.data.text_field, cache_dir=run_dir / "cache",
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(str(err)) from None
    return corpus[cfg.data.split][: cfg.max_rows]


def _generate(method, s: DictConfig, n: int, generator):
    """Sample `n` sequences with the options `s` (prompt, steps, solver, ...) of any method."""
    name = method.name
    common: dict[str, Any] = {
        "prompt": s.prompt or None,
        "temperature": float(s.temperature),
        "top_p": float(s.top_p),
        "generator": generator,
    }
    if name == "ar":
        return method.sample(n, s.length, **common)
    if name == "udlm":
        return method.sample(n, s.length, steps=s.steps, **common)
    if name == "blockgen":
        return method.sample(
            n, s.length, steps=s.steps, block_size=s.block_size, solver=s.solver or "mdlm",
            arpc=bool(s.arpc), **common,
        )  # fmt: skip
    return method.sample(n, s.length, steps=s.steps, solver=s.solver or "mdlm_cached", **common)


# --- verbs --------------------------------------------------------------------------------------


@verb("data")
def data(cfg: DictConfig, run_dir: Path) -> None:
    """Read a corpus (file, folder of .txt, .jsonl, builtin:*), make a tokenizer, pack, cache."""
    from polydiff.core.io import atomic_write_json

    tok, corpus = _prepare_data(cfg, run_dir)
    sizes = {name: list(t.shape) for name, t in corpus.splits.items()}
    summary = {
        "source": cfg.data.source,
        "seq_len": cfg.data.seq_len,
        "seed": cfg.seed,
        "tokenizer": {"kind": tok.kind, "vocab_size": tok.vocab_size},
        "splits": sizes,
        "cache": sorted(p.name for p in (run_dir / "cache").glob("tokens-*.safetensors")),
    }
    atomic_write_json(run_dir / "data.json", summary)
    rows = ", ".join(f"{k} {v[0]}" for k, v in sizes.items())
    print(f"{cfg.data.source}: {tok.kind} tokenizer (vocab {tok.vocab_size}), {rows} rows of "
          f"{cfg.data.seq_len} tokens -> {run_dir}")  # fmt: skip


@verb("train")
def train(cfg: DictConfig, run_dir: Path) -> None:
    """Train a text model (method=mdlm|udlm|blockgen|ar) on a corpus; exports train/export."""
    from polydiff.core.io import atomic_write_json
    from polydiff.text.methods import METHODS
    from polydiff.text.nets import TransformerConfig
    from polydiff.text.training import EXPORT_DIR, train_method

    if cfg.method not in METHOD_NAMES:
        raise ConfigError(f"method must be one of {'|'.join(METHOD_NAMES)}, got {cfg.method!r}")
    if cfg.data.split not in SPLITS:
        raise ConfigError(f"data.split must be one of {'|'.join(SPLITS)}, got {cfg.data.split!r}")
    _check_positive(cfg, "train.steps", "train.batch_size", "model.d_model", "model.n_layers")
    _check_positive(cfg, "model.n_heads", "train.checkpoint_every", "train.val_rows")
    if cfg.model.d_model % cfg.model.n_heads:
        raise ConfigError(
            f"model.d_model={cfg.model.d_model} must be divisible by model.n_heads="
            f"{cfg.model.n_heads}"
        )
    tok, corpus = _prepare_data(cfg, run_dir)
    rows = corpus[cfg.data.split]
    if rows.shape[0] < cfg.train.batch_size:
        raise ConfigError(
            f"split {cfg.data.split!r} of {cfg.data.source} has {rows.shape[0]} sequences of "
            f"{cfg.data.seq_len} tokens, fewer than train.batch_size={cfg.train.batch_size}"
        )
    net = dict(OmegaConf.to_container(cfg.model, resolve=True))
    if cfg.method == "udlm" and net.get("time_conditioning") == "none":
        net["time_conditioning"] = "adaln"  # UDLM needs the time (udlm_transformer's default)
    transformer = TransformerConfig(vocab_size=tok.vocab_size, max_seq_len=cfg.data.seq_len, **net)
    cls = METHODS[cfg.method]
    extra: dict[str, Any] = {}
    if cfg.method == "blockgen":
        b = cfg.blockgen
        if len(b.block_sizes) != len(b.weights) or not b.block_sizes:
            raise ConfigError(
                "blockgen.block_sizes and blockgen.weights need equal, nonzero length"
            )
        if cfg.data.seq_len % max(b.block_sizes):
            raise ConfigError(
                f"data.seq_len={cfg.data.seq_len} must be a multiple of the largest block size "
                f"{max(b.block_sizes)}"
            )
        extra["block_sizes"] = dict(zip(b.block_sizes, b.weights, strict=True))
    try:
        method = cls(cls.config_class(transformer, **extra), tok)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    n_val = min(cfg.train.val_rows, corpus["validation"].shape[0])
    module = train_method(
        method, rows, run_dir / "train", max_steps=cfg.train.steps,
        batch_size=cfg.train.batch_size, lr=cfg.train.lr, warmup_steps=cfg.train.warmup,
        ema_decay=cfg.train.ema, ema_warmup=cfg.train.ema_warmup,
        checkpoint_every=cfg.train.checkpoint_every, seed=cfg.seed,
        log_every=min(50, cfg.train.steps), **OmegaConf.to_container(cfg.trainer),
    )  # fmt: skip
    if module.global_rank != 0:  # under DDP only rank 0 evaluates and writes
        return
    val = corpus["validation"][:n_val].split(cfg.train.batch_size)
    if cfg.method == "ar":
        metric = {"validation_ppl": method.perplexity(val)}
    else:
        metric = {"validation_ppl_bound": method.perplexity_bound(val)}
    n_params = sum(p.numel() for p in method.net.parameters())
    export = run_dir / "train" / EXPORT_DIR
    metrics = {"method": cfg.method, "steps": cfg.train.steps, "parameters": n_params,
               "validation_rows": n_val, "checkpoint": str(export), **metric}  # fmt: skip
    atomic_write_json(run_dir / "metrics.json", metrics)
    name, value = next(iter(metric.items()))
    print(f"{cfg.method}: {n_params} parameters, {name} {value:.3f} -> {export}")


@verb("sample")
def sample(cfg: DictConfig, run_dir: Path) -> None:
    """Sample text from a trained checkpoint (prompt, steps, solver, temperature, top_p, n)."""
    import torch

    from polydiff.core.io import atomic_write_json, atomic_write_text

    _check_positive(cfg, "n", "steps")
    _check_sampling(cfg)
    method = _load(cfg.checkpoint, "checkpoint", cfg.device)
    generator = torch.Generator(device=cfg.device).manual_seed(cfg.seed)
    try:
        result = _generate(method, cfg, cfg.n, generator)
    except ValueError as err:  # a prompt longer than the context, an unknown solver, ...
        raise ConfigError(str(err)) from None
    texts = method.decode(result.tokens)
    record = {
        "checkpoint": _checkpoint_name(cfg.checkpoint),
        "method": method.name,
        "prompt": cfg.prompt,
        "network_calls": result.network_calls,
        "nfe": result.nfe,
        "tokens_per_second": result.tokens_per_second,
        "samples": texts,
    }
    atomic_write_json(run_dir / "samples.json", record)
    atomic_write_text(run_dir / "samples.txt", "".join(f"{t}\n\n" for t in texts))
    for i, t in enumerate(texts):
        print(f"--- sample {i} ---\n{t}")
    print(f"--- {len(texts)} samples, nfe {result.nfe:g}, {result.tokens_per_second:.0f} tokens/s")


@verb("evaluate")
def evaluate(cfg: DictConfig, run_dir: Path) -> None:
    """Perplexity (bound) on held-out text; gen-PPL + entropy of samples under an AR reference."""
    import torch

    from polydiff.core.io import atomic_write_json
    from polydiff.text.evaluation import frontier_sweep, held_out_entropy, plot_frontier

    _check_positive(cfg, "batch_size", "max_rows", "n_time_samples", "sample.n", "sample.steps")
    for t in cfg.sample.temperatures:
        _check_sampling(OmegaConf.create({"temperature": t, "top_p": 1.0}))
    for p in cfg.sample.top_ps:
        _check_sampling(OmegaConf.create({"temperature": 1.0, "top_p": p}))
    method = _load(cfg.checkpoint, "checkpoint")
    tok = method.tokenizer
    reference = None
    if cfg.reference is not None:
        reference = _load_reference(cfg.reference, method, cfg.checkpoint)
    held_out = _held_out(cfg, method, run_dir)
    torch.manual_seed(cfg.seed)  # the antithetic times of the bound
    batches = held_out.split(cfg.batch_size)
    metrics: dict[str, Any] = {"checkpoint": _checkpoint_name(cfg.checkpoint),
                               "method": method.name, "split": cfg.data.split,
                               "rows": held_out.shape[0]}  # fmt: skip
    if method.name == "ar":
        metrics["ppl"] = method.perplexity(batches)
    else:  # blockgen: the bound at its sampling block size
        metrics["ppl_bound"] = method.perplexity_bound(batches, n_time_samples=cfg.n_time_samples)
    ignore = (tok.pad_id,)
    metrics["held_out_entropy"] = held_out_entropy(held_out, ignore)
    lines = [f"{k}: {v:.4g}" for k, v in metrics.items() if isinstance(v, float)]
    if reference is not None:
        generator = torch.Generator().manual_seed(cfg.seed)
        s = cfg.sample

        def sample_fn(temperature: float, top_p: float):
            opts = OmegaConf.merge(s, {"temperature": temperature, "top_p": top_p})
            return _generate(method, opts, s.n, generator)

        try:
            points = frontier_sweep(
                sample_fn, reference.net, temperatures=list(s.temperatures),
                top_ps=list(s.top_ps), bos_id=None, mask_id=tok.mask_id, ignore_ids=ignore,
            )  # fmt: skip
        except ValueError as err:
            raise ConfigError(str(err)) from None
        metrics["samples"] = [p.to_dict() for p in points]
        plot_frontier({method.name: points}, run_dir / "frontier.png",
                      reference_entropy=metrics["held_out_entropy"])  # fmt: skip
        for p in points:
            lines.append(f"T={p.temperature:g} top_p={p.top_p:g}: gen-PPL {p.gen_ppl:.4g}, "
                         f"entropy {p.entropy:.3f}, nfe {p.nfe:g}")  # fmt: skip
    atomic_write_json(run_dir / "metrics.json", metrics)
    print("\n".join(lines))


# --- demo ---------------------------------------------------------------------------------------


def _sampler_opts(cfg: DictConfig, solver: str, prompt: str, t: float = 1.0, p: float = 1.0):
    return OmegaConf.create({
        "prompt": prompt, "temperature": t, "top_p": p, "length": cfg.length,
        "steps": cfg.steps, "solver": solver, "block_size": None, "arpc": False,
    })  # fmt: skip


def _demo_markdown(metrics: dict[str, Any], samples: dict[str, list[str]]) -> str:
    """The report section: bound, the samplers' gen-PPL + entropy, one sample per sampler."""
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
    for name, texts in samples.items():
        lines += [f"{name}:", "```", texts[0].strip()[:400], "```"]
    return "\n".join(lines)


@demo_stage(
    quick=(
        "max_rows=16",
        "length=48",
        "steps=8",
        "prompts=[ROMEO:]",
        "samplers=[mdlm_cached,remdm]",
        "n_per_prompt=1",
        "n_gen=4",
        "frontier.temperatures=[0.9,1.0]",
        "frontier.top_ps=[1.0]",
    )
)
@verb("demo")
def demo(cfg: DictConfig, run_dir: Path) -> StageResult:
    """Shipped MDLM: prompted samples, bound on held-out text, gen-PPL + entropy, frontier plot.

    Every sampler in `samplers` continues every prompt (samples/<sampler>.txt) and draws `n_gen`
    unprompted samples scored by the AR reference (gen-PPL) together with their unigram entropy;
    the first sampler is swept over `frontier.temperatures` x `frontier.top_ps` (frontier.png).
    """
    import torch

    from polydiff.core.io import atomic_write_json, atomic_write_text
    from polydiff.text.evaluation import frontier_sweep, held_out_entropy, plot_frontier

    _check_positive(cfg, "max_rows", "batch_size", "steps", "n_per_prompt", "n_gen")
    if not cfg.samplers:
        raise ConfigError("samplers must name at least one solver, e.g. [mdlm_cached]")
    method = _load(cfg.checkpoint, "checkpoint")
    if method.name == "ar":
        raise ConfigError(f"checkpoint={cfg.checkpoint}: the demo shows a diffusion model, not ar")
    reference = _load_reference(cfg.reference or "shipped", method, cfg.checkpoint)
    tok, ignore = method.tokenizer, (method.tokenizer.pad_id,)
    held_out = _held_out(cfg, method, run_dir)
    torch.manual_seed(cfg.seed)  # the antithetic times of the bound
    batches = held_out.split(cfg.batch_size)
    held = {"rows": held_out.shape[0], "ppl_bound": method.perplexity_bound(batches),
            "reference_ppl": reference.perplexity(batches),
            "entropy": held_out_entropy(held_out, ignore)}  # fmt: skip

    generator = torch.Generator().manual_seed(cfg.seed)
    samples: dict[str, list[str]] = {}
    points: dict[str, list] = {}
    try:
        for solver in cfg.samplers:
            texts = []
            for prompt in cfg.prompts:
                opts = _sampler_opts(cfg, solver, prompt)
                texts += method.decode(_generate(method, opts, cfg.n_per_prompt, generator).tokens)
            samples[solver] = texts
            temps, top_ps = [1.0], [1.0]
            if solver == cfg.samplers[0]:  # the frontier sweep (it includes T = 1, top-p = 1)
                temps = sorted({*cfg.frontier.temperatures, 1.0})
                top_ps = sorted({*cfg.frontier.top_ps, 1.0})
            points[solver] = frontier_sweep(
                lambda t, p, s=solver: _generate(method, _sampler_opts(cfg, s, "", t, p),
                                                 cfg.n_gen, generator),
                reference.net, temperatures=temps, top_ps=top_ps, mask_id=tok.mask_id,
                ignore_ids=ignore,
            )  # fmt: skip
    except ValueError as err:  # an unknown solver, a prompt longer than the context
        raise ConfigError(str(err)) from None

    for solver, texts in samples.items():
        atomic_write_text(run_dir / "samples" / f"{solver}.txt", "".join(f"{t}\n\n" for t in texts))
    curves = {f"{s} (nfe {pts[-1].nfe:.0f})": pts for s, pts in points.items()}
    plot = plot_frontier(
        curves, run_dir / "frontier.png", title="gen-PPL vs entropy (shipped MDLM)",
        reference_entropy=held["entropy"],
    )  # fmt: skip
    at_one = {s: next(p for p in pts if p.temperature == 1 and p.top_p == 1)
              for s, pts in points.items()}  # fmt: skip
    metrics = {
        "checkpoint": _checkpoint_name(cfg.checkpoint),
        "reference": str(_load_reference_name(cfg.reference)),
        "method": method.name, "split": cfg.data.split, "steps": cfg.steps, "seed": cfg.seed,
        "held_out": held,
        "samplers": {s: p.to_dict() for s, p in at_one.items()},
        "frontier": {s: [p.to_dict() for p in pts] for s, pts in points.items()},
        "samples": samples,
    }  # fmt: skip
    atomic_write_json(run_dir / "metrics.json", metrics)
    first = at_one[cfg.samplers[0]]
    headline = {
        "PPL bound": round(held["ppl_bound"], 3),
        "reference PPL": round(held["reference_ppl"], 3),
        f"gen-PPL {cfg.samplers[0]}": round(first.gen_ppl, 2),
        "entropy (data)": f"{first.entropy:.3f} ({held['entropy']:.3f})",
    }
    return StageResult(
        headline=headline,
        markdown=_demo_markdown(metrics, samples),
        plots=[("gen-PPL vs unigram entropy of unprompted samples (T / top-p sweep)", plot)],
        metrics=metrics,
    )


def _load_reference_name(folder: Any) -> Path:
    from polydiff.text.method import SHIPPED_REFERENCE

    return SHIPPED_REFERENCE if folder in (None, "shipped") else Path(folder)
