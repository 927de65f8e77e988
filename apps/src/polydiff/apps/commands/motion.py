"""Motion: human motion synthesis (MDM) from action labels, read from and written to BVH.

Plumbing only: each verb builds polydiff.motion's objects, calls the library and writes what it
returns."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from polydiff.apps.registry import ConfigError, StageResult, demo_stage, verb

if TYPE_CHECKING:
    from polydiff.motion.data import Clip
    from polydiff.motion.mdm import MotionDiffusion

log = logging.getLogger(__name__)


def _path(value: Any, option: str, *, folder: bool = True) -> Path:
    """An option's existing folder (or file), relative to where `polydiff` was started."""
    from hydra.utils import to_absolute_path

    path = Path(to_absolute_path(str(value)))
    if not (path.is_dir() if folder else path.exists()):
        raise ConfigError(f"{option}={value}: no such {'folder' if folder else 'file'}")
    return path


def _output(cfg: DictConfig, run_dir: Path) -> Path:
    """The folder `output=` names (null: the run folder), checked before anything is written."""
    from hydra.utils import to_absolute_path

    if cfg.output is None:
        return run_dir
    out = Path(to_absolute_path(str(cfg.output)))
    for parent in (out, *out.parents):
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"output={cfg.output}: {parent} is a file, not a folder")
    return out


def _positive(cfg: DictConfig, *options: str) -> None:
    for option in options:
        value = OmegaConf.select(cfg, option)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{option}={value}: must be a positive number")


def _bvh_options(cfg: DictConfig) -> dict[str, Any]:
    _positive(cfg, "bvh.scale")
    joint_map = OmegaConf.to_container(cfg.bvh.joint_map) if cfg.bvh.joint_map else None
    return {"scale": cfg.bvh.scale, "joint_map": joint_map, "drop_other_joints": cfg.bvh.drop_other}


def _clips(cfg: DictConfig, option: str) -> list[Clip]:
    """The BVH corpus folder `option` names, or (null) the built-in procedural corpus."""
    from polydiff.motion.data import generate_corpus, read_corpus

    if cfg[option] is None:
        _positive(cfg, "corpus.clips_per_label", "corpus.seconds")
        c = cfg.corpus
        return generate_corpus(c.clips_per_label, seconds=c.seconds, seed=cfg.seed)
    return read_corpus(_path(cfg[option], option), **_bvh_options(cfg))


def _sampling(cfg: DictConfig) -> dict[str, Any]:
    """generate_motions' options, checked."""
    from polydiff.core import list_solvers

    if cfg.steps is not None:
        _positive(cfg, "steps")
        if not isinstance(cfg.steps, int):
            raise ConfigError(f"steps={cfg.steps}: must be a whole number")
    scale = cfg.cfg_scale
    if scale is not None and (not isinstance(scale, (int, float)) or scale < 0):
        raise ConfigError(f"cfg_scale={scale}: must be >= 0 (1: no guidance; null: the model's)")
    if not isinstance(cfg.gifs, int) or cfg.gifs < 0:
        raise ConfigError(f"gifs={cfg.gifs}: must be a whole number >= 0")
    if cfg.solver not in list_solvers():
        raise ConfigError(f"solver={cfg.solver}: unknown; known: {', '.join(list_solvers())}")
    if cfg.frames is not None:
        _positive(cfg, "frames")
    guidance = None if scale is None else float(scale)
    return {"steps": cfg.steps, "solver": cfg.solver, "guidance": guidance}


def _model(cfg: DictConfig) -> MotionDiffusion:
    from polydiff.motion.mdm import load_mdm

    return load_mdm(None if cfg.model is None else _path(cfg.model, "model"))


def _actions(cfg: DictConfig) -> list[str]:
    from polydiff.motion.data import action_index

    actions = [cfg.actions] if isinstance(cfg.actions, str) else list(cfg.actions or [])
    if not actions:
        raise ConfigError("actions: give at least one action label")
    for action in actions:
        action_index(str(action))  # an unknown label is an InputError listing the known ones
    _positive(cfg, "samples_per_action")
    return [str(a) for a in actions for _ in range(cfg.samples_per_action)]


def _table(rows: dict[str, dict[str, Any]]) -> str:
    """A markdown table of motion_metrics results (and time per generated second)."""
    lines = [
        "| motion | clips | FID | diversity | foot skating | floor penetration (m) | jerk (m/s³) "
        "| s per s |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def number(value: Any, digits: int) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    for name, m in rows.items():
        lines.append(
            f"| {name} | {m['clips']} | {number(m.get('fid'), 2)} "
            f"| {number(m.get('diversity'), 2)} | {m['foot_skating']:.3f} "
            f"| {m['floor_penetration']:.4f} | {m['jerk']:.1f} "
            f"| {number(m.get('seconds_per_second'), 3)} |"
        )
    return "\n".join(lines)


@verb("data")
def data(cfg: DictConfig, run_dir: Path) -> None:
    """Write the built-in procedural corpus (or a checked copy of a BVH folder) as BVH files.

    Writes <run>/corpus/<action>/<style>/<action>_<style>_<k>.bvh at 20 fps (the layout
    `polydiff motion train data=<run>/corpus` reads) and labels.json (clips per action/style).
    With input=<folder> the folder's BVH files (<action>/<style>/*.bvh or <action>/*.bvh) are
    read with the bvh.* options, resampled to 20 fps and written on their own bone lengths.
    """
    from polydiff.core.io import atomic_write_json
    from polydiff.motion.data import label_counts, write_corpus

    clips = _clips(cfg, "input")
    write_corpus(clips, run_dir / "corpus")
    counts = label_counts(clips)
    atomic_write_json(run_dir / "labels.json", counts)
    for label, count in counts.items():
        log.info("%-20s %d clips", label, count)
    log.info("%d clips -> %s", len(clips), run_dir / "corpus")


def _train_encoder(cfg: DictConfig, run_dir: Path) -> None:
    """method=encoder: the evaluation encoder (polydiff.motion.encoder.train_encoder)."""
    from polydiff.motion.encoder import EncoderConfig, train_encoder

    e = cfg.encoder
    _positive(cfg, "window", "stride", *(f"encoder.{k}" for k in ("steps", "batch_size", "lr")))
    try:
        config = EncoderConfig(width=e.width, embed_dim=e.embed_dim, layers=e.layers)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"encoder: {err}") from None
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    recipe = {
        "batch_size": e.batch_size,
        "lr": e.lr,
        "checkpoint_every": cfg.train.checkpoint_every,
    }
    train_encoder(
        _clips(cfg, "data"), run_dir, config=config, frames=cfg.window + 1, stride=cfg.stride,
        max_steps=e.steps, seed=cfg.seed, **recipe, **trainer,
    )  # fmt: skip
    log.info("encoder -> %s", run_dir / "encoder")


@verb("train")
def train(cfg: DictConfig, run_dir: Path) -> None:
    """Train a motion model (MDM, EMDM) or the evaluation encoder on the built-in corpus or a
    BVH folder.

    method=mdm (the diffusion model), method=emdm (the few-step denoising-diffusion GAN, with
    the emdm.* options; emdm.init=<MDM folder> or `shipped` starts its generator from an MDM) or
    method=autoregressive (the frame-by-frame streamer, autoregressive.* options) run
    polydiff.motion.mdm.train_mdm (AdamW, EMA) through polydiff.core.train; rerun with the same
    hydra.run.dir to resume from checkpoints/last.ckpt. The EMA weights with the feature
    normaliser go to <run>/model (use it as `generate model=<run>/model`). method=encoder trains
    the action/style classifier whose features `evaluate` uses for FID and diversity (encoder.*
    options) into <run>/encoder.
    """
    from polydiff.motion.autoregressive import MotionStreamer, StreamConfig
    from polydiff.motion.data import MotionDataset
    from polydiff.motion.emdm import EMDMConfig, MotionDDGAN, init_generator
    from polydiff.motion.mdm import MDMConfig, MotionDiffusion, load_mdm, train_mdm

    methods = {
        "mdm": (MDMConfig, MotionDiffusion, None),
        "emdm": (EMDMConfig, MotionDDGAN, "emdm"),
        "autoregressive": (StreamConfig, MotionStreamer, "autoregressive"),
    }
    if cfg.method not in (*methods, "encoder"):
        raise ConfigError(f"method={cfg.method}: unknown; known: {', '.join(methods)}, encoder")
    if cfg.method == "encoder":
        return _train_encoder(cfg, run_dir)
    t = cfg.train
    _positive(cfg, "window", "stride", "train.steps", "train.batch_size", "train.lr")
    if not 0 <= t.ema < 1:
        raise ConfigError(f"train.ema={t.ema}: must lie in [0, 1)")
    gan = cfg.method == "emdm"
    if gan:
        _positive(cfg, "emdm.steps", "emdm.latent_dim", "emdm.disc_layers", "emdm.disc_lr_scale")
    config_class, method_class, section = methods[cfg.method]
    extra = dict(cfg[section]) if section else {}
    init = extra.pop("init", None)
    disc_lr_scale = extra.pop("disc_lr_scale", 1.0)
    try:
        config = config_class(**{"frames": cfg.window, **cfg.model, **extra})
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model: {err}") from None
    dataset = MotionDataset(_clips(cfg, "data"), window=cfg.window, stride=cfg.stride)
    log.info("%d windows of %d frames", len(dataset), cfg.window)
    method = method_class(config)
    if init is not None:
        init_generator(method, load_mdm(None if init == "shipped" else _path(init, "emdm.init")))
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    recipe = {"batch_size": t.batch_size, "lr": t.lr, "ema_decay": t.ema}
    recipe |= {"warmup_steps": t.warmup, "checkpoint_every": t.checkpoint_every}
    if gan:
        recipe["betas"] = (0.5, 0.9)  # DDGAN's Adam betas
        recipe["lr_scales"] = {"discriminator.": disc_lr_scale}
    folder = train_mdm(
        method, dataset, run_dir, max_steps=t.steps, seed=cfg.seed, **recipe, **trainer
    )
    from polydiff.core.io import read_json

    info = read_json(folder / "training.json")
    loss = "n/a (no step ran)" if info["final_loss"] is None else f"{info['final_loss']:.4f}"
    log.info("step %d: final training loss %s; model -> %s", info["steps"], loss, folder)


def _generate(cfg: DictConfig, out: Path) -> tuple[dict[str, Any], list[Path], list[Any]]:
    """Sample, write BVH files (and GIFs) into `out`; returns metrics, the GIF paths and the
    joint positions of the files written."""
    from polydiff.core.io import atomic_write_json
    from polydiff.motion.data import FPS
    from polydiff.motion.io import Motion, write_bvh
    from polydiff.motion.mdm import generate_motions
    from polydiff.motion.metrics import motion_metrics
    from polydiff.motion.render import animate
    from polydiff.motion.skeleton import smpl22

    options, actions = _sampling(cfg), _actions(cfg)
    method = _model(cfg)
    if options["guidance"] is None:
        options["guidance"] = method.default_guidance
    positions, seconds = generate_motions(
        method, actions, frames=cfg.frames, seed=cfg.seed, **options
    )
    names = [f"{a}_{k % cfg.samples_per_action:03d}" for k, a in enumerate(actions)]
    # on the standard skeleton's bones, so the metrics are those of the files written
    motions = {name: Motion.from_positions(p, FPS, smpl22()) for name, p in zip(names, positions)}
    out.mkdir(parents=True, exist_ok=True)
    gifs = []
    for k, (name, motion) in enumerate(motions.items()):
        write_bvh(out / f"{name}.bvh", motion)
        if k < cfg.gifs:
            gifs.append(animate(motion.positions, out / f"{name}.gif", fps=FPS, title=name))
    metrics = motion_metrics({name: m.positions for name, m in motions.items()}, FPS)
    metrics["seconds_per_second"] = seconds / metrics["seconds"]
    metrics |= {"model": str(cfg.model or "shipped"), **options, "actions": actions}
    metrics["steps"] = method.sampling_steps(options["steps"])
    atomic_write_json(out / "metrics.json", metrics)
    return metrics, gifs, [m.positions for m in motions.values()]


@verb("generate")
def generate(cfg: DictConfig, run_dir: Path) -> None:
    """Sample motions for action labels: BVH files, animated GIFs and metrics.json.

    One clip per label and sample (actions=[walk,run], samples_per_action), from a trained
    model (model=<train run>/model) or the shipped checkpoint, with the core's solver `solver`,
    `steps` steps and classifier-free guidance `cfg_scale` (1: none). BVH files are the decoded
    joint positions put on the 22-joint skeleton (opens in Blender); prints the foot-skating ratio.
    """
    metrics = _generate(cfg, _output(cfg, run_dir))[0]
    log.info(
        "%d clips, foot-skating ratio %.3f, %.3f s per generated second",
        metrics["clips"],
        metrics["foot_skating"],
        metrics["seconds_per_second"],
    )


def _encoder(cfg: DictConfig) -> Any:
    from polydiff.motion.encoder import load_encoder

    return load_encoder(None if cfg.encoder is None else _path(cfg.encoder, "encoder"))


def _feature_metrics(encoder: Any, positions: list, reference: list, rows: dict) -> None:
    """FID and diversity of the evaluated clips (the first row) against windows of the
    reference clips as long as the shortest evaluated clip, cut end to end; left out (None)
    with fewer than 2 clips on either side."""
    from polydiff.motion.encoder import feature_metrics, position_windows

    frames = min(len(p) for p in positions)
    windows = position_windows(reference, frames, frames)
    first, corpus = next(iter(rows.values())), rows["corpus"]
    if len(positions) < 2 or len(windows) < 2:
        first["fid"] = first["diversity"] = corpus["diversity"] = None
        return
    found = feature_metrics(encoder, positions, windows)
    first |= {"fid": found["fid"], "diversity": found["diversity"]}
    corpus |= {"diversity": found["reference_diversity"], "windows": len(windows)}


@verb("evaluate")
def evaluate(cfg: DictConfig, run_dir: Path) -> None:
    """FID, diversity, foot skating, floor penetration and jerk of BVH files or a model's samples.

    input=<folder>: every .bvh below it (read with the bvh.* options, resampled to 20 fps);
    otherwise the model (model=<folder>, null: the shipped checkpoint) samples `actions` and
    its time per generated second is measured too. The reference row is the built-in corpus
    (corpus.*) or reference=<BVH corpus folder>. FID and diversity are computed in the feature
    space of the motion encoder (encoder=<folder>, null: the shipped one) against windows of the
    reference as long as the shortest clip. Writes metrics.json and metrics.md.
    """
    from polydiff.core.io import atomic_write_json, atomic_write_text
    from polydiff.motion.data import FPS
    from polydiff.motion.io import read_bvh
    from polydiff.motion.metrics import motion_metrics

    if cfg.input is not None:
        folder = _path(cfg.input, "input")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".bvh")
        if not files:
            raise ConfigError(f"input={cfg.input}: no .bvh files in it")
        options = _bvh_options(cfg)
        clips = {str(p): read_bvh(p, **options).resampled(FPS).positions for p in files}
        rows = {"input": motion_metrics(clips, FPS)}
        reference, encoder = _clips(cfg, "reference"), _encoder(cfg)
        positions = list(clips.values())
    else:
        reference = _clips(cfg, "reference")  # option errors before the model samples
        encoder = _encoder(cfg)
        metrics, _, positions = _generate(cfg, run_dir / "samples")
        rows = {"generated": metrics}
    clips = {f"{c.action}/{c.style}/{k}": c.positions for k, c in enumerate(reference)}
    rows["corpus"] = motion_metrics(clips, FPS)
    _feature_metrics(encoder, positions, list(clips.values()), rows)
    atomic_write_json(run_dir / "metrics.json", rows)
    atomic_write_text(run_dir / "metrics.md", _table(rows) + "\n")
    log.info("\n%s", _table(rows))


@demo_stage(quick=("steps=10", "actions=[walk,run]", "corpus.clips_per_label=1"))
@verb("demo")
def demo(cfg: DictConfig, run_dir: Path) -> StageResult:
    """The shipped MDM checkpoint samples every action: metrics vs the corpus and a GIF.

    Runs `evaluate` on the shipped checkpoint's samples (BVH + GIF in <run>/samples) and reports
    FID and diversity (shipped encoder), foot skating, floor penetration, jerk and time per
    generated second next to the built-in corpus' own numbers.
    """
    from polydiff.core.io import read_json

    evaluate(cfg, run_dir)
    rows = read_json(run_dir / "metrics.json")
    generated = rows["generated"]
    markdown = (
        f"The shipped `mdm-procedural` checkpoint, {generated['solver']} with {generated['steps']} "
        f"steps and CFG scale {generated['guidance']}, one 2 s clip per action, against the "
        f"built-in procedural corpus.\n\n{_table(rows)}"
    )
    gifs = sorted((run_dir / "samples").glob("*.gif"))
    headline = {
        "FID": "n/a" if generated.get("fid") is None else round(generated["fid"], 1),
        "foot skating": round(generated["foot_skating"], 3),
        "corpus foot skating": round(rows["corpus"]["foot_skating"], 3),
        "s per generated s": round(generated["seconds_per_second"], 3),
    }
    plots = [(f"Generated: {p.stem}", p) for p in gifs]
    return StageResult(headline, markdown, plots, rows)
