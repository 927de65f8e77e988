"""Text: masked, uniform and block discrete diffusion language models."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from polydiff.apps.registry import ConfigError, StageResult, demo_stage, verb

SPLITS = ("train", "reference", "validation")


def _check_positive(cfg: DictConfig, *keys: str) -> None:
    """ConfigError (exit 2) for every dotted key whose value is not a positive integer."""
    for key in keys:
        value = OmegaConf.select(cfg, key)
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key} must be a positive integer, got {value!r}")


def _check_recipe(cfg: DictConfig) -> None:
    """The optimiser's numbers, checked before the corpus is read (nothing written on refusal)."""
    from polydiff.core.errors import check_number

    check_number("train.lr", cfg.train.lr, positive=True)
    check_number("train.warmup", cfg.train.warmup, minimum=0)
    if not 0 <= check_number("train.ema", cfg.train.ema) < 1:
        raise ConfigError(f"train.ema must be in [0, 1), got {cfg.train.ema!r}")


def _check_split(cfg: DictConfig) -> None:
    if cfg.data.split not in SPLITS:
        raise ConfigError(f"data.split must be one of {'|'.join(SPLITS)}, got {cfg.data.split!r}")


def _check_sampling(s: DictConfig) -> None:
    if not s.temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {s.temperature}")
    if not 0 < s.top_p <= 1:
        raise ConfigError(f"top_p must be in (0, 1], got {s.top_p}")


def _prepare_data(cfg: DictConfig, out_dir: Path):
    """Tokenizer and packed splits from `cfg.data` / `cfg.tokenizer` (`data.prepared`: the
    folder of a `polydiff text data` run, whose tokenizer and token cache are reused)."""
    from polydiff.text.data import prepare_data

    if not isinstance(cfg.data.seq_len, int) or cfg.data.seq_len < 2:
        raise ConfigError(f"data.seq_len must be an integer >= 2 (BOS + one token), got "
                          f"{cfg.data.seq_len!r}")  # fmt: skip
    if cfg.tokenizer.kind not in ("byte", "bpe"):
        raise ConfigError(f"tokenizer.kind must be byte or bpe, got {cfg.tokenizer.kind!r}")
    try:
        return prepare_data(
            cfg.data.source, cfg.data.seq_len, out_dir, kind=cfg.tokenizer.kind,
            vocab_size=cfg.tokenizer.vocab_size, tokenizer_dir=cfg.tokenizer.dir,
            prepared=cfg.data.get("prepared"), seed=cfg.seed, text_field=cfg.data.text_field,
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(str(err)) from None


def _load(folder: Any, key: str, device: str = "cpu"):
    """A method saved by `polydiff text train` (its `export` folder, or the run folder; None or
    shipped: the one shipped with polydiff-text) and the name a run records it by."""
    from polydiff.text.method import load_method, shipped_checkpoint, shipped_reference

    if folder in (None, "shipped"):
        folder = shipped_checkpoint() if key == "checkpoint" else shipped_reference()
    name = folder = Path(folder)
    if (folder / "train" / "export").is_dir():  # a train run folder: use its export
        folder = folder / "train" / "export"
    try:
        return load_method(folder, device=device), str(name)
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(f"{key}={folder}: {err}") from None


def _reference(folder: Any, method):
    """The AR gen-PPL reference of `method`'s samples (a causal LM with its tokenizer)."""
    from polydiff.text.evaluation import check_reference

    reference, name = _load(folder, "reference")
    try:
        return check_reference(reference, method), name
    except ValueError as err:
        raise ConfigError(f"reference={folder}: {err}") from None


@verb("data")
def data(cfg: DictConfig, run_dir: Path) -> None:
    """Read a corpus (file, folder of .txt, .jsonl, builtin:*), make a tokenizer, pack, cache."""
    tok, corpus = _prepare_data(cfg, run_dir)
    rows = ", ".join(f"{k} {t.shape[0]}" for k, t in corpus.splits.items())
    print(f"{cfg.data.source}: {tok.kind} tokenizer (vocab {tok.vocab_size}), {rows} rows of "
          f"{cfg.data.seq_len} tokens -> {run_dir}")  # fmt: skip


@verb("train")
def train(cfg: DictConfig, run_dir: Path) -> None:
    """Train a text model (method=mdlm|udlm|blockgen|ar) on a corpus; exports train/export."""
    import torch

    from polydiff.core.io import atomic_write_json
    from polydiff.core.method import list_methods
    from polydiff.text.method import new_method
    from polydiff.text.training import train_and_score

    if cfg.method not in list_methods("text"):
        known = "|".join(list_methods("text"))
        raise ConfigError(f"method must be one of {known}, got {cfg.method!r}")
    _check_split(cfg)
    _check_recipe(cfg)
    _check_positive(cfg, "train.steps", "train.batch_size", "model.d_model", "model.n_layers")
    _check_positive(cfg, "model.n_heads", "train.checkpoint_every", "train.val_rows")
    if cfg.model.d_model % cfg.model.n_heads:
        raise ConfigError(f"model.d_model={cfg.model.d_model} must be divisible by "
                          f"model.n_heads={cfg.model.n_heads}")  # fmt: skip
    tok, corpus = _prepare_data(cfg, run_dir)
    rows = corpus[cfg.data.split]
    if rows.shape[0] < cfg.train.batch_size:
        raise ConfigError(f"split {cfg.data.split!r} of {cfg.data.source} has {rows.shape[0]} "
                          f"sequences of {cfg.data.seq_len} tokens, fewer than "
                          f"train.batch_size={cfg.train.batch_size}")  # fmt: skip
    # the method's own options, if any, are in the config group named after it (blockgen.*)
    options = OmegaConf.to_container(cfg.get(cfg.method) or OmegaConf.create(), resolve=True)
    network = OmegaConf.to_container(cfg.model, resolve=True)
    torch.manual_seed(cfg.seed)  # the initialisation
    try:
        method = new_method(cfg.method, tok, cfg.data.seq_len, network, **options)
    except ValueError as err:
        raise ConfigError(f"{cfg.method}: {err}") from None
    n_val = min(cfg.train.val_rows, corpus["validation"].shape[0])
    metrics = train_and_score(
        method, rows, corpus["validation"][:n_val], run_dir / "train", max_steps=cfg.train.steps,
        batch_size=cfg.train.batch_size, lr=cfg.train.lr, warmup_steps=cfg.train.warmup,
        ema_decay=cfg.train.ema, ema_warmup=cfg.train.ema_warmup,
        checkpoint_every=cfg.train.checkpoint_every, seed=cfg.seed,
        log_every=min(50, cfg.train.steps), **OmegaConf.to_container(cfg.trainer),
    )  # fmt: skip
    if metrics is not None:  # rank 0 writes
        atomic_write_json(run_dir / "metrics.json", metrics)
        exact = "validation_ppl" in metrics
        ppl = metrics["validation_ppl" if exact else "validation_ppl_bound"]
        score = (f"validation_ppl {ppl:.3f}" if exact else f"validation_ppl_bound {ppl:.3f} ± "
                 f"{metrics['validation_ppl_bound_se']:.2g}")  # fmt: skip
        baseline = metrics["validation_unigram_ppl"]
        print(f"{cfg.method}: {metrics['parameters']} parameters, {score} (unigram baseline "
              f"{baseline:.3f}) -> {metrics['checkpoint']}")  # fmt: skip
        if ppl >= baseline:
            print(f"warning: {cfg.method} is no better than the unigram model of its training "
                  f"text on validation: train longer (train.steps={cfg.train.steps}) or check "
                  "the learning rate and the data", file=sys.stderr)  # fmt: skip


@verb("sample")
def sample(cfg: DictConfig, run_dir: Path) -> None:
    """Sample text from a trained checkpoint (prompt, steps, solver, temperature, top_p, n)."""
    import torch

    from polydiff.core.io import atomic_write_json, atomic_write_text

    _check_positive(cfg, "n", "steps")
    _check_sampling(cfg)
    method, name = _load(cfg.checkpoint, "checkpoint", cfg.device)
    generator = torch.Generator(device=cfg.device).manual_seed(cfg.seed)
    options = method.pick_sample_options(cfg)
    try:
        result = method.sample(cfg.n, cfg.length, generator=generator, **options)
    except ValueError as err:  # a prompt longer than the context, an unknown solver, ...
        raise ConfigError(str(err)) from None
    texts = method.decode(result.tokens)
    record = {"checkpoint": name, "method": method.name,
              "prompt": cfg.prompt, "network_calls": result.network_calls, "nfe": result.nfe,
              "tokens_per_second": result.tokens_per_second, "samples": texts}  # fmt: skip
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
    from polydiff.text import evaluation as ev

    _check_positive(cfg, "batch_size", "max_rows", "n_time_samples", "sample.n", "sample.steps")
    _check_split(cfg)
    for t, p in [(t, 1.0) for t in cfg.sample.temperatures] + [(1.0, p) for p in cfg.sample.top_ps]:
        _check_sampling(OmegaConf.create({"temperature": t, "top_p": p}))
    method, name = _load(cfg.checkpoint, "checkpoint")
    reference = None if cfg.reference is None else _reference(cfg.reference, method)[0]
    s = cfg.sample
    try:
        rows = ev.held_out_rows(method, cfg.data.source, cfg.data.split, max_rows=cfg.max_rows,
                                seed=cfg.seed, text_field=cfg.data.text_field,
                                cache_dir=run_dir / "cache")  # fmt: skip
        torch.manual_seed(cfg.seed)  # the antithetic times of the bound
        held = ev.held_out_scores(method, rows, batch_size=cfg.batch_size,
                                  n_time_samples=cfg.n_time_samples)  # fmt: skip
        points = reference and ev.method_frontier(
            method, reference, s.n, s.length, temperatures=list(s.temperatures),
            top_ps=list(s.top_ps), generator=torch.Generator().manual_seed(cfg.seed),
            **method.pick_sample_options(s),
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as err:  # no such split, a long prompt, ...
        raise ConfigError(str(err)) from None
    metrics = {"checkpoint": name, "method": method.name, "split": cfg.data.split, **held}
    lines = [f"{k}: {v:.4g}" for k, v in held.items()
             if isinstance(v, float) and k not in ("ppl_bound", "ppl_bound_se")]  # fmt: skip
    if "ppl_bound" in held:
        lines.insert(0, f"ppl_bound: {held['ppl_bound']:.4g} ± {held['ppl_bound_se']:.2g} "
                        f"(standard error over {held['rows']} sequences, "
                        f"{cfg.n_time_samples} time draws each)")  # fmt: skip
    if points:
        metrics["samples"] = [p.to_dict() for p in points]
        ev.plot_frontier({method.name: points}, run_dir / "frontier.png",
                         reference_entropy=held["held_out_entropy"])  # fmt: skip
        lines += [f"T={p.temperature:g} top_p={p.top_p:g}: gen-PPL {p.gen_ppl:.4g}, entropy "
                  f"{p.entropy:.3f}, nfe {p.nfe:g}" for p in points]  # fmt: skip
    atomic_write_json(run_dir / "metrics.json", metrics)
    print("\n".join(lines))


@demo_stage(quick=("max_rows=16", "length=48", "steps=8", "prompts=[ROMEO:]",
                   "samplers=[mdlm_cached,remdm]", "n_per_prompt=1", "n_gen=4",
                   "frontier.temperatures=[0.9,1.0]", "frontier.top_ps=[1.0]"))  # fmt: skip
@verb("demo")
def demo(cfg: DictConfig, run_dir: Path) -> StageResult:
    """Shipped MDLM: prompted samples, bound on held-out text, gen-PPL + entropy, frontier plot.

    Every sampler in `samplers` continues every prompt (samples/<sampler>.txt) and draws `n_gen`
    unprompted samples scored by the AR reference (gen-PPL) together with their unigram entropy;
    the first sampler is swept over `frontier.temperatures` x `frontier.top_ps` (frontier.png).
    """
    from polydiff.core.io import atomic_write_json, atomic_write_text
    from polydiff.text.evaluation import held_out_rows, plot_frontier, showcase, showcase_markdown

    _check_positive(cfg, "max_rows", "batch_size", "steps", "n_per_prompt", "n_gen")
    if not cfg.samplers:
        raise ConfigError("samplers must name at least one solver, e.g. [mdlm_cached]")
    method, name = _load(cfg.checkpoint, "checkpoint")
    if "solver" not in method.sample_options:
        raise ConfigError(f"checkpoint={cfg.checkpoint}: the demo compares the solvers of a "
                          f"diffusion model; {method.name} has none")  # fmt: skip
    reference, reference_name = _reference(cfg.reference, method)
    try:
        rows = held_out_rows(method, cfg.data.source, cfg.data.split, max_rows=cfg.max_rows,
                             seed=cfg.seed, text_field=cfg.data.text_field,
                             cache_dir=run_dir / "cache")  # fmt: skip
        shown, points = showcase(
            method, reference, rows, list(cfg.samplers), batch_size=cfg.batch_size,
            seed=cfg.seed, prompts=list(cfg.prompts), n_per_prompt=cfg.n_per_prompt,
            n_gen=cfg.n_gen, length=cfg.length, temperatures=list(cfg.frontier.temperatures),
            top_ps=list(cfg.frontier.top_ps), steps=cfg.steps,
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as err:  # an unknown solver, a long prompt, ...
        raise ConfigError(str(err)) from None
    for solver, texts in shown["samples"].items():
        atomic_write_text(run_dir / "samples" / f"{solver}.txt", "".join(f"{t}\n\n" for t in texts))
    plot = plot_frontier({f"{s} (nfe {pts[-1].nfe:.0f})": pts for s, pts in points.items()},
                         run_dir / "frontier.png", title="gen-PPL vs entropy (shipped MDLM)",
                         reference_entropy=shown["held_out"]["entropy"])  # fmt: skip
    metrics = {"checkpoint": name, "reference": reference_name, "method": method.name,
               "split": cfg.data.split, "steps": cfg.steps, "seed": cfg.seed, **shown}  # fmt: skip
    atomic_write_json(run_dir / "metrics.json", metrics)
    held, first = shown["held_out"], shown["samplers"][cfg.samplers[0]]
    headline = {"PPL bound": round(held["ppl_bound"], 3),
                "reference PPL": round(held["reference_ppl"], 3),
                f"gen-PPL {cfg.samplers[0]}": round(first["gen_ppl"], 2),
                "entropy (data)": f"{first['entropy']:.3f} ({held['entropy']:.3f})"}  # fmt: skip
    plots = [("gen-PPL vs unigram entropy of unprompted samples (T / top-p sweep)", plot)]
    return StageResult(headline, showcase_markdown(metrics), plots, metrics)
