"""`polydiff demo`: run every registered demo stage and write one report.

Each stage is a verb (see registry.demo_stage) run with its domain's config, into
`<run_dir>/<domain>/`. A failing stage is recorded (error.txt, the report's table, the exit code)
and the next stage still runs.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from polydiff.apps.registry import (
    DOMAINS,
    ConfigError,
    DemoStage,
    StageResult,
    compose_config,
    demo_stages,
)
from polydiff.apps.report import Entry, write_report

log = logging.getLogger(__name__)


def select_stages(domains: str | Sequence[str] | None) -> list[DemoStage]:
    """The stages to run, in DOMAINS order; unknown or stage-less domains are a ConfigError."""
    stages = demo_stages()
    if domains is None:
        return list(stages.values())
    domains = [domains] if isinstance(domains, str) else list(domains)
    unknown = [d for d in domains if d not in DOMAINS]
    if unknown:
        raise ConfigError(f"domains: unknown domain(s) {unknown}; known: {list(DOMAINS)}")
    missing = [d for d in domains if d not in stages]
    if missing:
        raise ConfigError(
            f"domains: no demo stage registered yet for {missing}; available: {list(stages)}"
        )
    return [stages[d] for d in DOMAINS if d in domains]


def stage_overrides(cfg: DictConfig, stage: DemoStage) -> list[str]:
    """The stage's quick overrides (if cfg.quick), then the user's `overrides.<domain>` (a
    ConfigError unless it is a list)."""
    extra = cfg.get("overrides", {}).get(stage.domain)
    if extra is not None and not OmegaConf.is_list(extra):
        raise ConfigError(
            f"overrides.{stage.domain} must be a list of overrides, e.g. "
            f"'overrides.{stage.domain}=[\"seed=1\"]', got {extra!r}"
        )
    return [*(stage.quick if cfg.quick else ()), *(extra or [])]


def check_demo(cfg: DictConfig) -> None:
    """Fail before any stage runs on a bad option: `quick` not a boolean, an empty or unknown
    `domains`, a stage's `overrides.<domain>` that is not a list or does not compose."""
    if not isinstance(cfg.quick, bool):
        raise ConfigError(f"quick must be true or false, got {cfg.quick!r}")
    domains = cfg.domains
    if domains is not None and not isinstance(domains, str):
        if not OmegaConf.is_list(domains) or len(domains) == 0:
            raise ConfigError(
                f"domains must be a non-empty list of domains, e.g. [core,text], got {domains!r}"
            )
    for stage in select_stages(cfg.domains):
        overrides = stage_overrides(cfg, stage)  # ConfigError: not a list
        try:
            compose_config(stage.verb.config_name, overrides)
        except Exception as err:
            first = str(err).strip().split("\n", 1)[0]
            raise ConfigError(f"overrides.{stage.domain}: {first}") from None


def run_stage(stage: DemoStage, out_dir: Path, overrides: Sequence[str]) -> StageResult:
    cfg = compose_config(stage.verb.config_name, overrides)
    result = stage.verb.fn(cfg, out_dir)
    if not isinstance(result, StageResult):
        raise TypeError(f"demo stage {stage.domain} returned {type(result).__name__}")
    return result


def run_demo(cfg: DictConfig, run_dir: Path) -> int:
    """Run the selected stages into run_dir/<domain>/; write report.md. Returns the exit code."""
    from polydiff.core.io import (
        atomic_write_json,
        atomic_write_text,
    )  # imports torch: not in --help

    stages = select_stages(cfg.domains)
    entries: list[Entry] = []
    for stage in tqdm(stages, desc="polydiff demo", unit="domain"):
        out_dir = run_dir / stage.domain
        out_dir.mkdir(parents=True, exist_ok=True)
        overrides = stage_overrides(cfg, stage)
        log.info("demo stage %s: %s %s", stage.domain, stage.verb.config_name, overrides)
        start = time.perf_counter()
        try:
            result = run_stage(stage, out_dir, overrides)
            entries.append(Entry(stage.domain, time.perf_counter() - start, result=result))
        except Exception as exc:  # one domain's crash must not lose the others
            message = f"{type(exc).__name__}: {exc}".splitlines()[0]
            atomic_write_text(out_dir / "error.txt", traceback.format_exc())
            log.error("demo stage %s failed: %s", stage.domain, message)
            entries.append(Entry(stage.domain, time.perf_counter() - start, error=message))
    summary = {
        "quick": bool(cfg.quick),
        "domains": {
            e.domain: {
                "status": "ok" if e.ok else "failed",
                "seconds": round(e.seconds, 2),
                "headline": e.result.headline if e.ok else {},
                "error": e.error,
            }
            for e in entries
        },
    }
    atomic_write_json(run_dir / "summary.json", summary)
    preamble = (
        f"Run directory `{run_dir.name}`, quick={str(bool(cfg.quick)).lower()}; "
        f"{sum(e.ok for e in entries)}/{len(entries)} domains ok. "
        "Each domain folder holds its metrics.json, samples and plots."
    )
    without = [d for d in DOMAINS if d not in demo_stages()]
    if without:
        preamble += f" No demo stage yet: {', '.join(without)}."
    write_report(run_dir / "report.md", "polydiff demo report", entries, preamble)
    log.info("report: %s", run_dir / "report.md")
    return 0 if all(e.ok for e in entries) else 1
