"""Speech: enhancement and dereverberation with score-based models (SGMSE+, StoRM).

Plumbing only: options -> `polydiff.speech` (methods by name, enhance, train, evaluate) -> files."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from polydiff.apps.registry import ConfigError, StageResult, demo_stage, verb

AUDIO_EXTENSIONS = (".wav", ".flac")  # as polydiff.speech.audio (not imported: --help stays fast)
OPTIONS = ("sampler", "N", "snr", "corrector_steps", "t_start")  # the sampler options given here
SPEC_NUMBERS = ("sample_rate", "n_fft", "hop_length", "alpha", "beta", "frame_multiple")


def _require_path(value: Any, key: str, *, folder: bool = False) -> Path:
    """The existing path given as option `key` (ConfigError -> one line, exit 2)."""
    if value in (None, ""):
        raise ConfigError(f"{key} is required (e.g. {key}=path/to/...)")
    path = Path(str(value)).expanduser()
    if not path.exists():
        raise ConfigError(f"{key}: {path} does not exist")
    if folder and not path.is_dir():
        raise ConfigError(f"{key}: {path} is not a folder")
    return path


def _check_positive(cfg: DictConfig, *keys: str, minimum: float | None = None) -> None:
    """Each given (non-null) key is a number, > 0 (or >= `minimum`): else one line naming it."""
    from polydiff.core.errors import check_number

    for key in keys:
        value = OmegaConf.select(cfg, key)
        if value is not None:
            check_number(key, value, positive=minimum is None, minimum=minimum)


@contextmanager
def _usage(prefix: str = ""):
    """A library ValueError (bad option or file) as one usage line (exit 2)."""
    try:
        yield
    except (ValueError, FileNotFoundError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(prefix + str(err).splitlines()[0]) from None


def _write_json(path: Path, obj: Any) -> None:
    from polydiff.core.io import atomic_write_json, nan_to_none

    atomic_write_json(path, nan_to_none(obj), indent=1)  # e.g. the CI of a one-clip mean


@verb("data")
def data(cfg: DictConfig, run_dir: Path) -> None:
    """Generate the built-in corpus (espeak-ng speech + noise / reverb) in <run>/corpus/."""
    d = cfg.data
    from polydiff.speech.data.synth import CorpusConfig, generate_corpus

    _check_positive(cfg, "data.train", "data.valid", "data.test", minimum=0)
    sizes = {s: int(d[s]) for s in ("train", "valid", "test")}
    if sum(sizes.values()) == 0:
        raise ConfigError(f"data.train/valid/test must not all be 0, got {sizes}")
    lo, hi = d.snr_range
    if lo > hi:
        raise ConfigError(f"data.snr_range must be [low, high], got {list(d.snr_range)}")
    _check_positive(cfg, "data.sample_rate", "data.babble_talkers")
    snr, kinds = (float(lo), float(hi)), tuple(d.noise_kinds)
    more = {"babble_talkers": int(d.babble_talkers), "seed": int(cfg.seed)}
    with _usage("data."):  # "data.task must be ...", "data.noise_kinds must be ..."
        corpus_cfg = CorpusConfig(d.task, sizes, int(d.sample_rate), snr, kinds, **more)
    total, done = sum(sizes.values()), dict.fromkeys(sizes, 0)

    def progress(subset: str, k: int, n: int) -> None:
        done[subset] = k
        print(f"\r{sum(done.values())}/{total} clips ({subset})", end="", flush=True)

    root = generate_corpus(run_dir / "corpus", corpus_cfg, progress=progress)
    print(f"\ncorpus written to {root}")


def build_model(cfg: DictConfig):
    """The method `method` from presets (`polydiff.speech.build_method`) with the `spec.*`,
    `net.*` and `sde.*` options and the method's own section (e.g. `storm.*`)."""
    from polydiff.speech.methods import build_method

    _check_positive(cfg, "net.nf", "net.num_res_blocks", *(f"spec.{k}" for k in SPEC_NUMBERS))
    _check_positive(cfg, "sde.theta", "sde.sigma_min", "sde.sigma_max", "sde.t_eps")
    spec, net = OmegaConf.to_container(cfg.spec), OmegaConf.to_container(cfg.net)
    section = OmegaConf.to_container(cfg[cfg.method]) if cfg.get(cfg.method) else {}
    if section.get("predictor") is not None:
        section["predictor"] = _require_path(
            section["predictor"], f"{cfg.method}.predictor", folder=True
        )
    sde = {k: float(v) for k, v in cfg.sde.items()}
    kwargs = {"spec_changes": spec, "net_changes": net, **sde, **section}
    with _usage():
        return build_method(cfg.method, spec=spec.pop("preset"), net=net.pop("preset"), **kwargs)


@verb("train")
def train(cfg: DictConfig, run_dir: Path) -> None:
    """Train SGMSE+ or StoRM on a {train,valid}/{clean,noisy} corpus; exports <run>/model."""
    root = _require_path(cfg.data_root, "data_root", folder=True)
    if not (root / "train").is_dir():
        raise ConfigError(f"data_root: {root} has no train/ folder (expected train/clean, noisy)")
    t = cfg.train
    _check_positive(cfg, *(f"train.{k}" for k in ("steps", "batch_size", "num_frames", "lr")))
    _check_positive(cfg, "train.checkpoint_every", "train.export_every")
    _check_positive(cfg, "train.warmup_steps", minimum=0)
    from polydiff.speech.data.pairs import NORMALIZE

    if t.get("normalize", "noisy") not in NORMALIZE:
        raise ConfigError(f"train.normalize must be one of {NORMALIZE}, got {t.normalize!r}")
    import torch

    from polydiff.speech.train import train as train_method
    from polydiff.speech.train import training_summary

    torch.manual_seed(int(cfg.seed))  # the initial weights
    method = build_model(cfg)
    if t.num_frames % method.frame_multiple:
        raise ConfigError(
            f"train.num_frames must be a multiple of {method.frame_multiple} "
            f"(the network's frame multiple), got {t.num_frames}"
        )
    start = _warm_start(method, cfg)
    n_params = sum(p.numel() for p in method.net.parameters())
    print(f"{method.name}: {n_params / 1e6:.2f}M parameters, training {t.steps} steps{start}")
    opts = OmegaConf.to_container(cfg.train)
    opts.pop("init")
    steps, ema, warmup = opts.pop("steps"), opts.pop("ema"), opts.pop("ema_warmup")
    lr_warmup = opts.pop("warmup_steps", 0)
    module = train_method(
        method,
        root,
        run_dir / "train",
        export_to=run_dir / "model",
        max_steps=steps,
        ema_decay=ema,
        module_kwargs={"ema_warmup": warmup, "warmup_steps": lr_warmup},
        seed=int(cfg.seed),
        log_every=min(50, steps),
        **opts,
        **OmegaConf.to_container(cfg.trainer),
    )
    if module.global_rank == 0:  # under DDP only rank 0 exports
        path = run_dir / "model"
        summary = {**training_summary(module), "model": str(path)}
        if cfg.report_files and (root / "valid").is_dir():  # the exported (EMA) weights
            from polydiff.speech.methods import load_model

            summary["validation"] = _report_validation(load_model(path), root, cfg)
        _write_json(run_dir / "metrics.json", summary)
        print(f"model exported to {path} (polydiff speech enhance model={path} input=...)")


def _warm_start(method, cfg: DictConfig) -> str:
    """Load option `train.init` into `method`: "auto" (the shipped model of the method when its
    networks have the same shapes, else random weights), "shipped", a model folder or null
    (random). Returns the console note on where the weights came from."""
    init = cfg.train.init
    has_predictor = (cfg.get(cfg.method) or {}).get("predictor") is not None
    if init in (None, "", "none") or (init == "auto" and has_predictor):
        return " from random weights" + " (and the given predictor)" * has_predictor
    if has_predictor:
        raise ConfigError(f"train.init={init} and {cfg.method}.predictor both set the "
                          "predictor's weights: give one (train.init=null)")  # fmt: skip
    from polydiff.speech.methods import warm_start

    spec = None if init in ("auto", "shipped") else init
    folder, shipped = _model_folder(spec, "train.init", default=method.name)
    name = f"the shipped {folder.name}" if shipped else folder
    try:
        warm_start(method, folder)
    except (ValueError, FileNotFoundError) as err:
        if init != "auto":
            raise ConfigError(f"train.init: {str(err).splitlines()[0]}") from None
        return f" from random weights (train.init=auto: {name} has other network shapes)"
    return f" from the weights of {name} (train.init={init})"


def _report_validation(method, root: Path, cfg: DictConfig) -> dict[str, Any]:
    """Enhance a few validation clips with the trained model; print the numbers against the
    noisy input, and a warning when enhancing made any of them worse."""
    from polydiff.speech.train import validation_report

    report = validation_report(method, root, num_files=int(cfg.report_files), seed=int(cfg.seed))
    noisy, enhanced = report["noisy"], report["enhanced"]
    cells = ", ".join(f"{k} {noisy[k]:.3g} -> {enhanced[k]:.3g}" for k in noisy)
    print(f"validation ({report['files']} files, noisy -> enhanced): {cells}")
    if report["worse"]:
        print(f"warning: the model makes {', '.join(report['worse'])} worse than the noisy "
              f"input: train longer (train.steps={cfg.train.steps}) or use the shipped model "
              "(leave model= unset in enhance)", file=sys.stderr)  # fmt: skip
    return report


def _model_folder(spec: Any, option: str, default: str) -> tuple[Path, bool]:
    """(folder, shipped?) of a model option: null is the shipped model of method `default`, a
    shipped model's name (where no path of that name exists) that model, else a folder."""
    from polydiff.speech.shipped import shipped_checkpoint, shipped_names

    if spec in (None, "") or (str(spec) in shipped_names() and not Path(str(spec)).exists()):
        with _usage(f"{option}: "):
            return shipped_checkpoint(str(spec) if spec else default), True
    return _require_path(spec, option, folder=True), False


def _load(cfg: DictConfig):
    """(method, its name in reports) of option `model`: a model folder or the name of a shipped
    model (e.g. storm_micro_8k); null: the shipped default StoRM."""
    from polydiff.speech.methods import load_model

    folder, shipped = _model_folder(cfg.model, "model", default="storm")
    name = f"shipped:{folder.name}" if shipped else folder
    with _usage("model: "):  # e.g. a folder without config.json
        return load_model(folder, map_location=cfg.device), str(name)


def _options(cfg: DictConfig, method) -> dict[str, Any]:
    """The sampler options given (non-null, "pc" left out), checked by the method."""
    given = {k: cfg[k] for k in OPTIONS if cfg.get(k) is not None and cfg[k] != "pc"}
    _check_positive(cfg, "N", "corrector_steps", minimum=0)
    _check_positive(cfg, "snr", "t_start")
    with _usage():
        method.options(**given)
    return given


@verb("enhance", positional="input", flags={"-o": "output", "--output": "output"})
def enhance(cfg: DictConfig, run_dir: Path) -> None:
    """Enhance a .wav/.flac file or folder: `enhance in.wav -o out.wav` (input=... output=...)."""
    method, name = _load(cfg)
    src = _require_path(cfg.input, "input")
    if src.is_file() and src.suffix.lower() not in AUDIO_EXTENSIONS:
        raise ConfigError(f"input: {src} is not a {'/'.join(AUDIO_EXTENSIONS)} file")
    _check_positive(cfg, "chunk_seconds")
    _check_positive(cfg, "margin_seconds", "fade_seconds", minimum=0)
    if cfg.on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be raise or skip, got {cfg.on_error!r}")
    options = _options(cfg, method)
    import time

    from polydiff.speech.enhance import enhance_path

    default = "enhanced" if src.is_dir() else f"enhanced{src.suffix.lower()}"
    out = Path(cfg.output) if cfg.output else run_dir / default
    if src.is_file() and out.is_dir():
        out = out / src.name
    if src.is_file() and out.exists() and out.resolve() == src.resolve():
        raise ConfigError(f"output must differ from input ({src})")
    if cfg.output:
        from polydiff.core.io import check_creatable

        check_creatable(out / "x" if src.is_dir() else out, f"output={cfg.output}")
    keys = ("seed", "overwrite", "chunk_seconds", "margin_seconds", "fade_seconds", "subtype")
    start = time.perf_counter()
    status = enhance_path(  # under torch.no_grad
        method,
        src,
        out,
        on_error=cfg.on_error,
        **{k: cfg[k] for k in keys},
        **options,
        progress=lambda k, n, p: print(f"[{k + 1}/{n}] {p}", flush=True),
    )
    seconds = time.perf_counter() - start
    report = {"input": str(src), "output": str(out), "model": name, "method": method.name}
    report.update(sampler_options=options, seconds=seconds, files=status)
    _write_json(run_dir / "enhance.json", report)
    counts = {k: sum(v.startswith(k) for v in status.values())
              for k in ("written", "replaced", "exists", "error")}  # fmt: skip
    line = f"{counts['written'] + counts['replaced']} file(s) -> {out} in {seconds:.1f} s"
    line += f", {counts['error']} error(s)"
    if counts["replaced"]:
        line += f"; replaced {counts['replaced']} existing file(s) (overwrite=true)"
    if counts["exists"]:
        line += f"; kept {counts['exists']} existing file(s) (overwrite=true replaces them)"
    print(line)


@verb("evaluate")
def evaluate(cfg: DictConfig, run_dir: Path) -> None:
    """Score enhanced files against clean ones: PESQ, ESTOI, SI-SDR/SIR/SAR (CSV, JSON)."""
    clean = _require_path(cfg.clean, "clean", folder=True)
    enhanced = _require_path(cfg.enhanced, "enhanced", folder=True)
    noisy = None if cfg.noisy is None else _require_path(cfg.noisy, "noisy", folder=True)
    _check_positive(cfg, "sample_rate")
    from polydiff.speech.evaluation import evaluate_folders

    with _usage():
        result = evaluate_folders(
            clean, enhanced, run_dir, noisy=noisy, sample_rate=int(cfg.sample_rate), plot=cfg.plot
        )
    print(json.dumps(result["table"], indent=1, ensure_ascii=False))


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
    method, name = _load(cfg)
    from polydiff.speech.evaluation import demo_markdown, demo_sets

    result = demo_sets(
        method,
        run_dir,
        clips=int(cfg.clips),
        real=int(cfg.real),
        seed=int(cfg.seed),
        corpus_seed=int(cfg.corpus_seed),
        options=_options(cfg, method),
        compare_N=cfg.compare_N,
    )
    headline, plot = result.pop("headline"), result.pop("plot")
    metrics = {"model": name, **result}
    _write_json(run_dir / "metrics.json", metrics)
    return StageResult(headline, demo_markdown(name, metrics), [("Spectrograms", plot)], metrics)
