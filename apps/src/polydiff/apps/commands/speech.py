"""Speech: enhancement and dereverberation with score-based models (SGMSE+, StoRM)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from polydiff.apps.registry import ConfigError, StageResult, demo_stage, verb

METHODS = ("sgmse", "storm")
TASKS = ("denoise", "dereverb", "both")
STORM_MODES = ("joint", "predictive", "frozen_predictive")
SAMPLERS = ("pc", "ode")
AUDIO_EXTENSIONS = (".wav", ".flac")  # as polydiff.speech.audio (not imported: --help stays fast)


def _require_path(value: Any, key: str, *, folder: bool | None = None) -> Path:
    """The existing path given as option `key` (ConfigError -> one line, exit 2)."""
    if value in (None, ""):
        raise ConfigError(f"{key} is required (e.g. {key}=path/to/...)")
    path = Path(str(value)).expanduser()
    if not path.exists():
        raise ConfigError(f"{key}: {path} does not exist")
    if folder is True and not path.is_dir():
        raise ConfigError(f"{key}: {path} is not a folder")
    if folder is False and not path.is_file():
        raise ConfigError(f"{key}: {path} is not a file")
    return path


def _check_positive(cfg: DictConfig, *keys: str) -> None:
    for key in keys:
        value = OmegaConf.select(cfg, key)
        if value is not None and value <= 0:
            raise ConfigError(f"{key} must be > 0, got {value}")


def _write_json(path: Path, obj: Any) -> None:
    from polydiff.core.io import atomic_write_json

    atomic_write_json(path, obj, indent=1)


# ----------------------------------------------------------------------------- data


@verb("data")
def data(cfg: DictConfig, run_dir: Path) -> None:
    """Generate the built-in corpus (espeak-ng speech + noise / reverb) in <run>/corpus/."""
    d = cfg.data
    if d.task not in TASKS:
        raise ConfigError(f"data.task must be one of {', '.join(TASKS)}, got {d.task!r}")
    from polydiff.speech.data.noise import NOISE_KINDS
    from polydiff.speech.data.synth import CorpusConfig, generate_corpus

    sizes = {s: int(d[s]) for s in ("train", "valid", "test")}
    if any(n < 0 for n in sizes.values()) or sum(sizes.values()) == 0:
        raise ConfigError(f"data.train/valid/test must be >= 0 and not all 0, got {sizes}")
    bad = [k for k in d.noise_kinds if k not in NOISE_KINDS]
    if bad or not d.noise_kinds:
        raise ConfigError(f"data.noise_kinds: unknown {bad}; choose from {', '.join(NOISE_KINDS)}")
    lo, hi = d.snr_range
    if lo > hi:
        raise ConfigError(f"data.snr_range must be [low, high], got {list(d.snr_range)}")
    _check_positive(cfg, "data.sample_rate", "data.babble_talkers")
    corpus_cfg = CorpusConfig(
        task=d.task,
        sizes=sizes,
        sample_rate=int(d.sample_rate),
        snr_range=(float(lo), float(hi)),
        noise_kinds=tuple(d.noise_kinds),
        babble_talkers=int(d.babble_talkers),
        seed=int(cfg.seed),
    )
    total = sum(sizes.values())
    done = {s: 0 for s in sizes}

    def progress(subset: str, k: int, n: int) -> None:
        done[subset] = k
        print(f"\r{sum(done.values())}/{total} clips ({subset})", end="", flush=True)

    root = generate_corpus(run_dir / "corpus", corpus_cfg, progress=progress)
    print(f"\ncorpus written to {root}")


# ----------------------------------------------------------------------------- train


def _spec(cfg: DictConfig, method: str):
    """The STFT config: the method's preset (or spec.preset) with the non-null overrides."""
    from polydiff.speech.audio import PRESETS

    name = cfg.spec.preset or ("16k_storm" if method == "storm" else "16k")
    if name not in PRESETS:
        raise ConfigError(f"spec.preset must be one of {', '.join(PRESETS)}, got {name!r}")
    fields = ("sample_rate", "n_fft", "hop_length", "alpha", "beta", "frame_multiple")
    changes = {k: cfg.spec[k] for k in fields if cfg.spec.get(k) is not None}
    try:
        return dataclasses.replace(PRESETS[name], **changes)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"spec: {err}") from None


def _net(cfg: DictConfig, base):
    """An NCSN++ config: the method's base config with the width/depth overrides of `net.*`."""
    changes: dict[str, Any] = {}
    for key in ("nf", "num_res_blocks", "dropout"):
        if cfg.net.get(key) is not None:
            changes[key] = cfg.net[key]
    for key in ("ch_mult", "attn_resolutions"):
        if cfg.net.get(key) is not None:
            changes[key] = tuple(int(v) for v in cfg.net[key])
    return dataclasses.replace(base, **changes)


def build_model(cfg: DictConfig):
    """An SGMSE or StoRM model from the `method`, `spec.*`, `net.*`, `sde.*`, `storm.*` options."""
    from polydiff.speech.nets import PRESETS as NET_PRESETS
    from polydiff.speech.sgmse import SGMSE, SGMSEConfig
    from polydiff.speech.storm import StoRM, StoRMConfig, predictor_config, score_config

    if cfg.method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {cfg.method!r}")
    if cfg.net.preset not in NET_PRESETS:
        raise ConfigError(
            f"net.preset must be one of {', '.join(NET_PRESETS)}, got {cfg.net.preset!r}"
        )
    spec = _spec(cfg, cfg.method)
    sde = {k: float(v) for k, v in cfg.sde.items()}
    try:
        if cfg.method == "sgmse":
            net = _net(cfg, NET_PRESETS[cfg.net.preset])
            return SGMSE(SGMSEConfig(spec=spec, net=net, **sde))
        if cfg.storm.mode not in STORM_MODES:
            raise ConfigError(
                f"storm.mode must be one of {', '.join(STORM_MODES)}, got {cfg.storm.mode!r}"
            )
        storm_cfg = StoRMConfig(
            spec=spec,
            predictor=_net(cfg, predictor_config(cfg.net.preset)),
            score=_net(cfg, score_config(cfg.net.preset)),
            a=float(cfg.storm.a),
            mode=cfg.storm.mode,
            **sde,
        )
    except (TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(str(err).splitlines()[0]) from None
    model = StoRM(storm_cfg)
    if cfg.storm.predictor is not None:
        model.load_predictor(_require_path(cfg.storm.predictor, "storm.predictor", folder=True))
    elif cfg.storm.mode == "frozen_predictive":
        raise ConfigError(
            "storm.mode=frozen_predictive needs storm.predictor=<model folder of a predictive run>"
        )
    return model


@verb("train")
def train(cfg: DictConfig, run_dir: Path) -> None:
    """Train SGMSE+ or StoRM on a {train,valid}/{clean,noisy} corpus; exports <run>/model."""
    root = _require_path(cfg.data_root, "data_root", folder=True)
    if not (root / "train").is_dir():
        raise ConfigError(f"data_root: {root} has no train/ folder (expected train/clean, noisy)")
    _check_positive(cfg, "train.steps", "train.batch_size", "train.num_frames", "train.lr")
    _check_positive(cfg, "train.checkpoint_every")
    import torch

    from polydiff.speech.train import save_model
    from polydiff.speech.train import train as train_model

    torch.manual_seed(int(cfg.seed))  # the initial weights
    model = build_model(cfg)
    if cfg.train.num_frames % model.spec.frame_multiple:
        raise ConfigError(
            f"train.num_frames must be a multiple of {model.spec.frame_multiple} "
            f"(the network's frame multiple), got {cfg.train.num_frames}"
        )
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{cfg.method}: {n_params / 1e6:.2f}M parameters, training {cfg.train.steps} steps")
    module = train_model(
        model,
        root,
        run_dir / "train",
        max_steps=int(cfg.train.steps),
        batch_size=int(cfg.train.batch_size),
        num_frames=int(cfg.train.num_frames),
        lr=float(cfg.train.lr),
        ema_decay=cfg.train.ema,
        seed=int(cfg.seed),
        num_workers=int(cfg.train.num_workers),
        validate=bool(cfg.train.validate),
        checkpoint_every=int(cfg.train.checkpoint_every),
        module_kwargs={"ema_warmup": bool(cfg.train.ema_warmup)},
        log_every=min(50, int(cfg.train.steps)),
        **OmegaConf.to_container(cfg.trainer),
    )
    if module.global_rank == 0:  # under DDP only rank 0 exports
        path = save_model(module, run_dir / "model")
        loss = module.trainer.callback_metrics.get("train/loss")
        summary = {
            "method": cfg.method,
            "steps": int(module.global_step),
            "parameters": n_params,
            "train_loss": None if loss is None else float(loss),
            "model": str(path),
        }
        _write_json(run_dir / "metrics.json", summary)
        print(f"model exported to {path} (polydiff speech enhance model={path} input=...)")


# ----------------------------------------------------------------------------- enhance


def _sampler_options(cfg: DictConfig, t_eps: float = 0.0) -> dict[str, Any]:
    if cfg.sampler not in SAMPLERS:
        raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS)}, got {cfg.sampler!r}")
    options: dict[str, Any] = {}
    if cfg.sampler == "ode":
        options["sampler"] = "ode"
    for key in ("N", "snr", "corrector_steps"):
        if cfg[key] is not None:
            if cfg[key] < 0:
                raise ConfigError(f"{key} must be >= 0, got {cfg[key]}")
            options[key] = cfg[key]
    if cfg.get("t_start") is not None:
        from polydiff.speech.sgmse import check_t_start

        try:  # the model was trained on times in [t_eps, 1]
            check_t_start(cfg.t_start, t_eps, "this model")
        except ValueError as error:
            raise ConfigError(str(error)) from None
        options["t_start"] = float(cfg.t_start)
    return options


@verb("enhance", positional="input", flags={"-o": "output", "--output": "output"})
def enhance(cfg: DictConfig, run_dir: Path) -> None:
    """Enhance a .wav/.flac file or folder: `enhance in.wav -o out.wav` (input=... output=...)."""
    model_dir = _model_dir(cfg.model)
    src = _require_path(cfg.input, "input")
    if src.is_file() and src.suffix.lower() not in AUDIO_EXTENSIONS:
        raise ConfigError(f"input: {src} is not a {'/'.join(AUDIO_EXTENSIONS)} file")
    _check_positive(cfg, "chunk_seconds")
    if cfg.on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be raise or skip, got {cfg.on_error!r}")
    if not (model_dir / "config.json").is_file():
        raise ConfigError(f"model: {model_dir} has no config.json (an exported model folder)")
    import time

    import torch

    from polydiff.speech.enhance import enhance_folder

    method, model = _load_model(model_dir, cfg.device)
    options = _sampler_options(cfg, model.cfg.t_eps)
    kwargs = dict(
        seed=int(cfg.seed),
        overwrite=bool(cfg.overwrite),
        chunk_seconds=float(cfg.chunk_seconds),
        margin_seconds=float(cfg.margin_seconds),
        fade_seconds=float(cfg.fade_seconds),
        subtype=cfg.subtype,
        **options,
    )
    start = time.perf_counter()
    with torch.inference_mode():
        if src.is_dir():
            out = Path(cfg.output) if cfg.output else run_dir / "enhanced"
            status = enhance_folder(
                model,
                src,
                out,
                on_error=cfg.on_error,
                progress=lambda k, n, p: print(f"[{k + 1}/{n}] {p}", flush=True),
                **kwargs,
            )
        else:
            out = Path(cfg.output) if cfg.output else run_dir / f"enhanced{src.suffix.lower()}"
            if out.exists() and out.is_dir():
                out = out / src.name
            status = _enhance_one(model, src, out, kwargs)
    seconds = time.perf_counter() - start
    result = {
        "input": str(src),
        "output": str(out),
        "model": str(model_dir) if cfg.model else f"shipped:{model_dir.name}",
        "method": method,
        "sampler_options": options,
        "seconds": seconds,
        "files": status,
    }
    _write_json(run_dir / "enhance.json", result)
    errors = sum(v.startswith("error") for v in status.values())
    print(f"{len(status) - errors} file(s) -> {out} in {seconds:.1f} s, {errors} error(s)")


def _model_dir(value: Any) -> Path:
    """The exported model folder of option `model`; null: the StoRM shipped with polydiff-speech."""
    if value in (None, ""):
        from polydiff.speech.shipped import shipped_checkpoint

        try:
            return shipped_checkpoint("storm")
        except FileNotFoundError as err:
            raise ConfigError(f"model: {err}") from None
    return _require_path(value, "model", folder=True)


def _load_model(model_dir: Path, device: str):
    """(method, model) of an exported folder, as `polydiff.speech.train.load_model`, with a
    one-line usage error (exit 2) for a config.json that names no speech method."""
    import torch

    from polydiff.speech.sgmse import SGMSE
    from polydiff.speech.storm import StoRM

    try:
        method = json.loads((model_dir / "config.json").read_text()).get("method")
    except (ValueError, AttributeError) as err:
        raise ConfigError(
            f"model: {model_dir / 'config.json'} is not a JSON object: {err}"
        ) from None
    classes = {"sgmse": SGMSE, "storm": StoRM}
    if method not in classes:
        raise ConfigError(f"model: {model_dir}/config.json names no known method ({method!r})")
    model = classes[method].load(model_dir, map_location=device)
    return method, model.to(torch.device(device)).eval()


def _enhance_one(model, src: Path, dst: Path, kwargs: dict[str, Any]) -> dict[str, str]:
    """One file through the same streaming path as a folder (`enhance_folder` on its folder
    would also take its siblings, so call the per-file pieces directly)."""
    from polydiff.speech.chunking import enhance_file
    from polydiff.speech.enhance import make_generator, wave_fn

    kwargs = dict(kwargs)
    seed, overwrite = kwargs.pop("seed"), kwargs.pop("overwrite")
    if dst.exists() and not overwrite:
        return {src.name: "exists"}
    if dst.resolve() == src.resolve():
        raise ConfigError(f"output must differ from input ({src})")
    file_keys = ("chunk_seconds", "margin_seconds", "fade_seconds", "subtype")
    file_kwargs = {k: kwargs.pop(k) for k in file_keys}
    fn = wave_fn(model, model.spec, make_generator(seed, model), **kwargs)
    enhance_file(fn, src, dst, model.spec, **file_kwargs)
    return {src.name: "written"}


# ----------------------------------------------------------------------------- evaluate


def _check_pairs(enhanced: Path, references: list[Path]) -> None:
    """Every enhanced file needs its namesake in each reference folder (cheap, before metrics)."""
    names = [p.name for p in sorted(enhanced.iterdir()) if p.suffix.lower() in AUDIO_EXTENSIONS]
    if not names:
        raise ConfigError(f"enhanced: no .wav/.flac files in {enhanced}")
    for folder in references:
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise ConfigError(
                f"{folder / missing[0]} is missing (the reference of an enhanced file{more})"
            )


@verb("evaluate")
def evaluate(cfg: DictConfig, run_dir: Path) -> None:
    """Score enhanced files against clean ones: PESQ, ESTOI, SI-SDR/SIR/SAR (CSV, JSON)."""
    clean = _require_path(cfg.clean, "clean", folder=True)
    enhanced = _require_path(cfg.enhanced, "enhanced", folder=True)
    noisy = None if cfg.noisy is None else _require_path(cfg.noisy, "noisy", folder=True)
    _check_positive(cfg, "sample_rate")
    _check_pairs(enhanced, [d for d in (clean, noisy) if d is not None])
    from polydiff.speech.audio import SpecConfig, load_audio
    from polydiff.speech.metrics import evaluate_folder, write_metrics
    from polydiff.speech.plots import plot_spectrograms

    sr = int(cfg.sample_rate)
    try:
        rows = evaluate_folder(clean, enhanced, noisy_dir=noisy, sample_rate=sr)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(str(err).splitlines()[0]) from None
    extra: dict[str, Any] = {"clean": str(clean), "enhanced": str(enhanced), "sample_rate": sr}
    if noisy is not None:
        baseline = evaluate_folder(clean, noisy, noisy_dir=noisy, sample_rate=sr)
        keep = {Path(r["file"]).as_posix() for r in rows}
        baseline = [r for r in baseline if Path(r["file"]).as_posix() in keep]
        extra["noisy"] = str(noisy)
        extra["noisy_summary"] = write_metrics(baseline, run_dir / "noisy_metrics.csv")
    summary = write_metrics(rows, run_dir / "metrics.csv", run_dir / "metrics.json", extra=extra)
    if cfg.plot:
        name = rows[0]["file"]
        signals = {}
        if noisy is not None:
            signals["noisy"] = load_audio(noisy / name, sample_rate=sr)[0]
        signals["enhanced"] = load_audio(enhanced / name, sample_rate=sr, allow_silence=True)[0]
        signals["clean"] = load_audio(clean / name, sample_rate=sr)[0]
        spec = SpecConfig(sample_rate=sr, n_fft=2 * (sr // 64) - 2, hop_length=sr // 125)
        plot_spectrograms(signals, run_dir / "spectrogram.png", spec, title=str(name))
    table = {k: f"{v['mean']:.3f} ± {v['ci']:.3f} (n={v['n']})" for k, v in summary.items()}
    if noisy is not None:
        for k, v in extra["noisy_summary"].items():
            table[k] += f"   noisy: {v['mean']:.3f}"
    print(json.dumps(table, indent=1, ensure_ascii=False))


# ----------------------------------------------------------------------------- demo


@demo_stage(quick=("clips=1", "real=1", "compare_N=[2]"))
@verb("demo")
def demo(cfg: DictConfig, run_dir: Path) -> StageResult:
    """Enhance held-out built-in clips and a real recording with the shipped model; score them."""
    if cfg.clips < 0 or cfg.real < 0 or cfg.clips + cfg.real == 0:
        raise ConfigError(
            f"clips and real must be >= 0 and not both 0, got {cfg.clips}, {cfg.real}"
        )
    if any(n < 0 for n in cfg.compare_N):
        raise ConfigError(f"compare_N must hold step counts >= 0, got {list(cfg.compare_N)}")
    model_dir = _model_dir(cfg.model)
    import torch

    from polydiff.speech.evaluation import builtin_clips, real_test_clips

    method, model = _load_model(model_dir, cfg.device)
    options = _sampler_options(cfg, model.cfg.t_eps)
    options.setdefault("N", int(model.cfg.N))
    sr = model.spec.sample_rate
    sets = {"built-in": builtin_clips(int(cfg.clips), sr, seed=int(cfg.corpus_seed))}
    if cfg.real:
        real = real_test_clips(int(cfg.real), sr)
        if real:
            sets["real (alsa)"] = real
        else:
            print("alsa-utils recordings not found: the real-speech row is skipped")
    with torch.inference_mode():
        results = {
            name: _demo_set(model, method, clips, options, cfg, run_dir)
            for name, clips in sets.items()
        }
    metrics = {
        "model": str(model_dir) if cfg.model else f"shipped:{model_dir.name}",
        "method": method,
        "sample_rate": sr,
        "sampler_options": options,
        "sets": {name: r["summary"] for name, r in results.items()},
    }
    _write_json(run_dir / "metrics.json", metrics)
    first = next(iter(results.values()))
    plot = _demo_plot(first, model, run_dir)
    key = _row_name(method, options["N"])
    built = first["summary"]
    headline = {
        "PESQ": built[key]["pesq"], "PESQ noisy": built["noisy"]["pesq"],
        "ESTOI": built[key]["estoi"], "SI-SDR (dB)": built[key]["si_sdr"], "RTF": built[key]["rtf"],
    }  # fmt: skip
    return StageResult(headline, _demo_markdown(metrics), [("Spectrograms", plot)], metrics)


def _row_name(method: str, N: int) -> str:
    return "predictive (storm N=0)" if method == "storm" and N == 0 else f"{method} N={N}"


def _demo_set(model, method: str, clips, options, cfg: DictConfig, run_dir: Path) -> dict:
    """Noisy, the model's sampler (`options`) and the `compare_N` step counts on one set."""
    from polydiff.speech.audio import save_audio
    from polydiff.speech.evaluation import run_method, score_set, set_summary

    runs: dict[str, Any] = {"noisy": ([c.noisy for c in clips], None)}
    key = _row_name(method, options["N"])
    runs[key] = run_method(model, clips, seed=int(cfg.seed), **options)
    for n in cfg.compare_N:
        if _row_name(method, int(n)) not in runs:
            extra = {**options, "N": int(n)}
            runs[_row_name(method, int(n))] = run_method(model, clips, seed=int(cfg.seed), **extra)
    summary = {}
    for name, (estimates, seconds) in runs.items():
        rows = score_set(clips, estimates)
        summary[name] = {k: _mean(v) for k, v in set_summary(rows, seconds, clips).items()}
    for clip, est in zip(clips, runs[key][0], strict=True):
        stem = Path(clip.name).stem
        for kind, audio in (("noisy", clip.noisy), ("enhanced", est), ("clean", clip.clean)):
            save_audio(run_dir / "audio" / f"{stem}_{kind}.wav", audio, clip.sample_rate)
    return {"clips": clips, "enhanced": runs[key][0], "summary": summary}


def _mean(v: Any) -> Any:
    """A summary entry's mean (metrics) or the value itself (rtf, audio_seconds)."""
    return v["mean"] if isinstance(v, dict) else v


def _demo_plot(result: dict, model, run_dir: Path) -> Path:
    from polydiff.speech.plots import plot_spectrograms

    clip, est = result["clips"][0], result["enhanced"][0]
    signals = {"noisy": clip.noisy, "enhanced": est, "clean": clip.clean}
    return plot_spectrograms(signals, run_dir / "spectrogram.png", model.spec, title=clip.name)


def _demo_markdown(metrics: dict) -> str:
    """One table per set: PESQ, ESTOI, SI-SDR means and the real-time factor per method."""
    lines = [f"Model `{metrics['model']}` ({metrics['method']}, {metrics['sample_rate']} Hz)."]
    for name, rows in metrics["sets"].items():
        secs = rows["noisy"]["audio_seconds"]
        lines += [
            "",
            f"**{name}** ({secs:.1f} s of audio)",
            "",
            "| method | PESQ | ESTOI | SI-SDR (dB) | RTF |",
            "|---|---|---|---|---|",
        ]
        for method, r in rows.items():
            rtf = "-" if r["rtf"] is None else f"{r['rtf']:.2f}"
            lines.append(
                f"| {method} | {r['pesq']:.3f} | {r['estoi']:.3f} | {r['si_sdr']:.2f} | {rtf} |"
            )
    return "\n".join(lines)
