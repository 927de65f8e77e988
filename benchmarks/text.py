"""polydiff.text: masked, uniform and block diffusion LMs against an AR baseline of the same size.

On the built-in Shakespeare corpus (byte tokenizer, same network size, batch, learning rate and
number of steps for every model, all on the `train` split):
1. likelihood: the validation perplexity bound (NELBO) of MDLM, UDLM and BlockGen (block 16) vs
   the AR baseline's exact perplexity, at each training length of --steps (default: half and
   all of the preset's steps);
2. samples: gen-PPL under the shipped AR reference (trained on the disjoint `reference` split)
   with the mean per-sample unigram entropy, at 16 / 64 / 256 total denoising steps, for MDLM
   ancestral, MDLM ReMDM, MDLM first-hitting (one token per step: always L steps) and BlockGen
   ARPC (steps / n_blocks per block; BlockGen ancestral alongside);
3. speed: tokens/s of MDLM ancestral with and without no-update caching at 64 / 256 / 1024
   steps (same samples: caching is exact for a model without time conditioning), and of the AR
   baseline with its KV cache;
4. a 64-step sampler that matches 256-step ancestral at equal entropy: each candidate's
   gen-PPL vs entropy frontier (two temperatures) is read at the entropy of 256-step ancestral
   (temperature 1), all on the same evaluation samples' seed.

`--gap-trend N [N ...]` instead measures only the MDLM/AR gap at those training lengths (AR and
MDLM trained or reused) with a power-law extrapolation of where it reaches 1.3x
(docs/benchmarks/text-gap.md).

Trained runs are kept in `--runs` (one folder per method and configuration, with an export at
each measured step count) and reused when the configuration is identical, so a rerun only
samples. Writes docs/benchmarks/text.md and text.json.
Run: `nox -s bench -- text --runs runs/text/bench` (or `python benchmarks/run.py text
[--steps N [N ...]] [--quick] [--runs DIR]`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
SOURCE = "builtin:shakespeare"
METHODS = ("ar", "mdlm", "udlm", "blockgen")
FULL = {
    "seq_len": 128, "d_model": 128, "n_layers": 3, "n_heads": 4, "batch_size": 32,
    "lr": 1e-3, "warmup": 100, "ema": 0.999, "ema_warmup": True, "steps": 500, "val_rows": 256,
    "n_time_samples": 2, "n_gen": 32, "n_match": 128, "speed_repeats": 3,
    "sample_steps": [16, 64, 256], "speed_steps": [64, 256, 1024], "speed_batch": 8,
    "block_size": 16, "frontier_temps": [0.95, 1.0],
}  # fmt: skip
QUICK = {
    **FULL, "seq_len": 32, "d_model": 32, "n_layers": 1, "n_heads": 2, "batch_size": 8,
    "warmup": 2, "steps": 10, "val_rows": 16, "n_time_samples": 1, "n_gen": 4, "n_match": 4,
    "speed_repeats": 1,
    "sample_steps": [4, 8, 16], "speed_steps": [8, 16, 32], "speed_batch": 2, "block_size": 8,
}  # fmt: skip
TRAIN_KEYS = ("seq_len", "d_model", "n_layers", "n_heads", "batch_size", "lr", "warmup", "ema",
              "ema_warmup")  # fmt: skip


# --- training (or reuse) -----------------------------------------------------------------------


def run_config(method: str, sizes: dict[str, Any], seed: int) -> dict[str, Any]:
    """Everything that determines a training run except its length (resumption is exact)."""
    cfg = {"method": method, "source": SOURCE, "tokenizer": "byte", "seed": seed}
    cfg.update({k: sizes[k] for k in TRAIN_KEYS})
    if method == "blockgen":
        cfg["block_sizes"] = {1: 0.05, sizes["block_size"]: 0.95}
    return cfg


def portable(text: str, runs: Path) -> str:
    """``text`` with the runs folder written as ``<runs>`` (or relative to the repo when inside
    it): a report never records a path of the machine it ran on."""
    resolved = runs.resolve()
    shown = str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else "<runs>"
    return text.replace(str(runs), shown).replace(str(resolved), shown)


def run_folder(runs: Path, cfg: dict[str, Any]) -> Path:
    key = hashlib.sha1(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return runs / f"{cfg['method']}-{key}"


def make_method(cfg: dict[str, Any], tok):
    from polydiff.text.method import new_method

    network = {k: cfg[k] for k in ("d_model", "n_layers", "n_heads")}
    options = {"block_sizes": cfg["block_sizes"]} if "block_sizes" in cfg else {}
    return new_method(cfg["method"], tok, cfg["seq_len"], network, **options)


def trained(cfg, tok, train_rows, runs: Path, steps: int, log) -> tuple[Path, float]:
    """Export folder of `cfg` trained for `steps` steps (reused if present) and the seconds
    its training took (recorded with the export). Training continues from the last checkpoint."""
    from polydiff.core.io import atomic_write_json
    from polydiff.text.training import EXPORT_DIR, train_method

    folder = run_folder(runs, cfg)
    export = folder / f"export-{steps}"
    if (export / "model.safetensors").is_file():
        log(f"reuse {export}")
        record = export / "train_seconds.json"  # what training it cost when it was made
        return export, json.loads(record.read_text())["seconds"] if record.is_file() else 0.0
    done = [int(p.stem.split("=")[1]) for p in (folder / "checkpoints").glob("step=*.ckpt")]
    if done and max(done) > steps:  # resuming would export the longer run under this label
        raise SystemExit(
            f"{folder} is already trained past {steps} steps (to {max(done)}) and "
            f"has no export-{steps}: measure at the lengths it has exports for"
        )
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "bench_config.json", cfg)
    method = make_method(cfg, tok)
    log(f"train {cfg['method']} to {steps} steps in {folder}")
    start = time.perf_counter()
    train_method(
        method, train_rows, folder, max_steps=steps, batch_size=cfg["batch_size"], lr=cfg["lr"],
        warmup_steps=cfg["warmup"], ema_decay=cfg["ema"], ema_warmup=cfg["ema_warmup"],
        seed=cfg["seed"],
        checkpoint_every=100, progress_bar=False, accelerator="cpu", devices=1,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    shutil.copytree(folder / EXPORT_DIR, export, dirs_exist_ok=True)
    atomic_write_json(export / "train_seconds.json", {"seconds": seconds})
    return export, seconds


# --- measurements ------------------------------------------------------------------------------


def likelihood(method, val: torch.Tensor, sizes, seed: int) -> dict[str, float]:
    """Exact PPL (AR) or the NELBO bound (diffusion; BlockGen at its sampling block size)."""
    gen = torch.Generator().manual_seed(seed)
    return method.held_out_perplexity(
        val.split(sizes["batch_size"]), n_time_samples=sizes["n_time_samples"], generator=gen
    )


def score(result, reference, tok) -> dict[str, float]:
    """gen-PPL under the reference (with the SE of its log) and mean unigram entropy."""
    from polydiff.text.evaluation import score_samples

    return score_samples(result, reference.net, mask_id=tok.mask_id, ignore_ids=(tok.pad_id,))


def draw(models, kind: str, steps: int, n: int, seed: int, temperature: float = 1.0):
    """`n` unprompted samples of sampler `kind` with `steps` total denoising steps."""
    g = torch.Generator().manual_seed(seed)
    mdlm, block = models["mdlm"], models["blockgen"]
    if kind in ("ancestral", "remdm", "remdm_loop", "confidence"):
        solver = "mdlm_cached" if kind == "ancestral" else kind
        return mdlm.sample(n, steps=steps, solver=solver, temperature=temperature, generator=g)
    if kind == "first_hitting":  # one token per step: always the context length
        return mdlm.sample(n, steps=steps, solver="first_hitting", generator=g)
    n_blocks = block.config.transformer.max_seq_len // block.config.sample_block_size
    per_block = max(1, steps // n_blocks)
    return block.sample(n, steps=per_block, arpc=kind == "blockgen_arpc", generator=g,
                        temperature=temperature)  # fmt: skip


SAMPLERS = ("ancestral", "remdm", "first_hitting", "blockgen_ancestral", "blockgen_arpc")


def sample_grid(models, reference, tok, sizes, seed: int, log) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for kind in SAMPLERS:
        out[kind] = {}
        grid = [sizes["seq_len"]] if kind == "first_hitting" else sizes["sample_steps"]
        for steps in grid:
            result = draw(models, kind, steps, sizes["n_gen"], seed)
            out[kind][str(steps)] = score(result, reference, tok)
            log(f"{kind} {steps}: {out[kind][str(steps)]}")
    return out


def network_share(nfe: float, call_seconds: float, seconds: float) -> float:
    """Estimated share of the wall time spent in the network: nfe (rows evaluated / batch) x
    the time of one full-batch call, i.e. network cost taken proportional to the rows."""
    return min(1.0, nfe * call_seconds / seconds)


def speed(models, sizes, seed: int, log) -> dict[str, Any]:
    """tokens/s of MDLM ancestral with / without no-update caching, and of AR with KV cache."""
    mdlm, n = models["mdlm"], sizes["speed_batch"]
    out: dict[str, Any] = {"context": sizes["seq_len"], "batch": n}
    z = torch.full((n, sizes["seq_len"]), mdlm.tokenizer.mask_id)
    with torch.no_grad():  # one batched network call, to split the time into network / rest
        mdlm.net(z, torch.ones(n))
        t0 = time.perf_counter()
        for _ in range(5):
            mdlm.net(z, torch.ones(n))
    out["network_call_seconds"] = (time.perf_counter() - t0) / 5
    for steps in sizes["speed_steps"]:
        best: dict[str, Any] = {}
        for _ in range(sizes["speed_repeats"]):  # interleaved; the fastest of each survives
            for solver in ("mdlm", "mdlm_cached"):  # the load of a shared machine
                g = torch.Generator().manual_seed(seed)
                r = mdlm.sample(n, steps=steps, solver=solver, generator=g)
                if solver not in best or r.seconds < best[solver].seconds:
                    best[solver] = r
        row = {}
        for solver, r in best.items():
            share = network_share(r.nfe, out["network_call_seconds"], r.seconds)
            row[solver] = {"tokens_per_second": r.tokens_per_second, "nfe": r.nfe,
                           "network_calls": r.network_calls, "seconds": r.seconds,
                           "network_share": share}  # fmt: skip
        ratio = row["mdlm_cached"]["tokens_per_second"] / row["mdlm"]["tokens_per_second"]
        out[str(steps)] = {**row, "speedup": ratio}
        log(f"speed {steps}: {ratio:.2f}x")
    g = torch.Generator().manual_seed(seed)
    r = models["ar"].sample(n, generator=g)
    out["ar_kv_cache"] = {"tokens_per_second": r.tokens_per_second, "nfe": r.nfe}
    return out


def matched_sampler(models, reference, tok, sizes, seed: int, log) -> dict[str, Any]:
    """64-step candidates read on their gen-PPL/entropy frontier at the entropy of 256-step
    ancestral (temperature 1); every run uses the evaluation seed and n_match samples."""
    from polydiff.text.evaluation import frontier_at_entropy

    lo, hi = sorted(sizes["sample_steps"])[1:]
    n = sizes["n_match"]
    base = score(draw(models, "ancestral", hi, n, seed), reference, tok)
    log(f"matched target: {base}")
    out: dict[str, Any] = {"steps": lo, "reference_steps": hi, "ancestral_reference": base,
                           "candidates": {}}  # fmt: skip
    for kind in ("ancestral", "remdm", "remdm_loop"):
        points = []
        for t in sizes["frontier_temps"]:
            points.append({**score(draw(models, kind, lo, n, seed, t), reference, tok),
                           "temperature": t})  # fmt: skip
        try:
            reading = frontier_at_entropy(points, base["entropy"])
        except ValueError:  # both temperatures gave the same entropy: no frontier to read
            top = points[-1]
            reading = {"gen_ppl": top["gen_ppl"], "temperature": top["temperature"],
                       "extrapolation": abs(top["entropy"] - base["entropy"])}  # fmt: skip
        res = {"points": points, **reading}
        res["gen_ppl_ratio"] = res["gen_ppl"] / base["gen_ppl"]
        # "reaches" = no higher gen-PPL at the target's entropy, read at most 0.02 nats
        # outside the measured temperatures
        res["goal_met"] = res["gen_ppl"] <= base["gen_ppl"] and res["extrapolation"] <= 0.02
        out["candidates"][kind] = res
        log(f"matched {kind}: {res}")
    return out


# --- report ------------------------------------------------------------------------------------


def _cell(c: dict[str, float]) -> str:
    """gen-PPL (SE of its log) / entropy / nfe; the SE is absent from older results."""
    se = f" ({c['log_gen_ppl_se']:.2f})" if "log_gen_ppl_se" in c else ""
    return f"{c['gen_ppl']:.2f}{se} / {c['entropy']:.3f} / {c['nfe']:.0f}"


def gap_trend(points, tok, train_rows, val, sizes, runs: Path, seed: int, log) -> dict[str, Any]:
    """MDLM bound / AR perplexity at each training length, and where the gap would reach 1.3x.

    The gap in nats per token, log(bound / ppl), is fitted as a power law in the steps over the
    last three lengths (least squares in log-log); the extrapolation assumes the trend holds."""
    from polydiff.text.method import load_method

    rows = {}
    for steps in points:
        row = {}
        for m, key in (("ar", "ppl"), ("mdlm", "ppl_bound")):
            export, _ = trained(run_config(m, sizes, seed), tok, train_rows, runs, steps, log)
            row[key] = likelihood(load_method(export, tokenizer=tok), val, sizes, seed)[key]
        row["ratio"] = row["ppl_bound"] / row["ppl"]
        row["gap_nats"] = math.log(row["ratio"])
        rows[str(steps)] = row
        log(f"gap at {steps} steps: {row}")
    fit = points[-3:]
    if len(fit) < 2 or min(rows[str(n)]["gap_nats"] for n in fit) <= 0:  # nothing to fit
        return {"sizes": sizes, "rows": rows, "fit_points": fit, "fit_exponent": None,
                "steps_for_1.3x": None}  # fmt: skip
    x = torch.tensor([math.log(n) for n in fit], dtype=torch.float64)
    y = torch.tensor([math.log(rows[str(n)]["gap_nats"]) for n in fit], dtype=torch.float64)
    slope = float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
    intercept = float(y.mean() - slope * x.mean())
    needed = math.exp((math.log(math.log(1.3)) - intercept) / slope) if slope < 0 else None
    return {
        "sizes": sizes,
        "rows": rows,
        "fit_points": fit,
        "fit_exponent": slope,
        "steps_for_1.3x": needed,
    }


def gap_markdown(r: dict[str, Any]) -> str:
    s, rows = r["sizes"], r["rows"]
    lines = [
        "# Benchmark: the MDLM / AR perplexity gap vs training steps",
        "",
        f"Command: `{r['command']}`; seed {r['seed']}; {r['seconds'] / 60:.1f} min for this "
        "invocation (it trains only runs it cannot reuse). The same runs, sizes and validation "
        f"rows as docs/benchmarks/text.md: byte tokenizer, context {s['seq_len']}, d_model "
        f"{s['d_model']}, {s['n_layers']} layers, batch {s['batch_size']}, lr {s['lr']}; "
        f"{s['val_rows']} validation rows, {s['n_time_samples']} antithetic time draws per row.",
        "",
        "| steps | AR exact PPL | MDLM bound | ratio | gap (nats/token) |",
        "|---|---|---|---|---|",
    ]
    for k, row in rows.items():
        lines.append(
            f"| {k} | {row['ppl']:.3f} | <= {row['ppl_bound']:.3f} | "
            f"{row['ratio']:.3f} | {row['gap_nats']:.3f} |"
        )
    needed = r["steps_for_1.3x"]
    if r["fit_exponent"] is None:
        note = "No power-law fit: fewer than two lengths, or the bound is not above the AR PPL."
        return "\n".join([*lines, "", note]) + "\n"
    lines += [
        "",
        f"Power-law fit of the gap over {r['fit_points']} steps: gap ~ steps^"
        f"{r['fit_exponent']:.3f}. "
        + (
            f"If that trend held, the bound would reach 1.3x the AR perplexity (gap "
            f"{math.log(1.3):.3f} nats) near {needed:,.0f} steps per model."
            if needed
            else "The gap does not shrink over these points: no extrapolation."
        )
        + " Extrapolation, not measurement.",
    ]
    return "\n".join(lines) + "\n"


def markdown(r: dict[str, Any]) -> str:
    s, lik = r["sizes"], r["likelihood"]
    steps = sorted(lik["ar"], key=int)
    final = steps[-1]
    lines = [
        "# Benchmark: text (discrete diffusion LMs vs AR)",
        "",
        f"Command: `{r['command']}`; seed {r['seed']}; {r['machine']}; total "
        f"{r['seconds'] / 60:.1f} min for this invocation (it trains only runs it cannot reuse); "
        f"training took {r['train_seconds'] / 60:.1f} min when the runs were made (recorded "
        "with them).",
        "",
        f"Corpus `{SOURCE}` (byte tokenizer, 260 ids), context {s['seq_len']}, every model a "
        f"transformer d_model {s['d_model']}, {s['n_layers']} layer(s), {s['n_heads']} heads "
        f"({r['parameters']['mdlm']:,} parameters for MDLM; UDLM adds adaLN time conditioning: "
        f"{r['parameters']['udlm']:,}), batch {s['batch_size']}, AdamW lr {s['lr']}, warmup "
        f"{s['warmup']}, EMA {s['ema']} with warmup (decay min({s['ema']}, (1+n)/(10+n))), "
        f"trained {final} steps on the train split (seed "
        f"{r['seed']}); BlockGen on the mixture {{1: 0.05, {s['block_size']}: 0.95}}. "
        f"Validation: the first {s['val_rows']} rows of the validation split; bounds with "
        f"{s['n_time_samples']} antithetic time draws per row.",
        "",
        "## 1. Validation perplexity: bound (diffusion) vs exact (AR)",
        "",
        "| model | " + " | ".join(f"{k} steps" for k in steps) + f" | ratio to AR ({final}) |",
        "|---|" + "---|" * (len(steps) + 1),
    ]
    for m in METHODS:
        key = "ppl" if m == "ar" else "ppl_bound"
        vals = " | ".join(("" if m == "ar" else "<= ") + f"{lik[m][k][key]:.3f}" for k in steps)
        ratio = lik[m][final][key] / lik["ar"][final]["ppl"]
        lines.append(f"| {m} | {vals} | {ratio:.3f} |")
    ratios = r["goals"]["mdlm_bound_ratio_by_steps"]
    met = r["goals"]["mdlm_bound_within_1.3x_ar"]
    trend = ", ".join(f"{ratios[k]:.3f} at {k}" for k in steps)
    lines += [
        "",
        f"Goal (MDLM bound <= 1.3 x AR perplexity): **{'met' if met else 'NOT met'}** at this "
        f"compute; MDLM/AR ratio {trend} steps. The AR perplexity scores L - 1 tokens per row "
        "(the first is context), the diffusion bounds all L.",
        "",
        "## 2. Samples: gen-PPL and unigram entropy",
        "",
        f"{s['n_gen']} unprompted samples of {s['seq_len']} tokens per cell, scored by the "
        f"shipped AR reference (trained on the disjoint `reference` split; its exact perplexity "
        f"on the validation rows: {r['reference_ppl']:.3f}; held-out text has mean unigram "
        f"entropy {r['held_out_entropy']:.3f} nats). Temperature 1, top-p 1. Steps are total "
        f"denoising steps; block samplers use steps / {s['seq_len'] // s['block_size']} per "
        f"block of {s['block_size']} (ARPC: about 2 x that many network calls). First-hitting "
        "reveals one token per step, so it always takes L steps. In brackets: the standard "
        "error of log gen-PPL over the samples (0.05 is a 5% noise band on gen-PPL).",
        "",
        "| sampler | " + " | ".join(f"{k} steps: gen-PPL / entropy / nfe" for k in
                                     map(str, s["sample_steps"])) + " |",
        "|---|" + "---|" * len(s["sample_steps"]),
    ]  # fmt: skip
    for kind, cells in r["samples"].items():
        row = []
        for k in map(str, s["sample_steps"]):
            c = cells.get(k)
            row.append("" if c is None else _cell(c))
        if kind == "first_hitting":
            ((k, c),) = cells.items()
            row = [f"({k} steps) {_cell(c)}"]
            row += [""] * (len(s["sample_steps"]) - 1)
        lines.append(f"| {kind} | " + " | ".join(row) + " |")
    sp = r["speed"]
    lines += [
        "",
        "## 3. Sampling speed (tokens/s, MDLM ancestral, context "
        f"{sp['context']}, batch {sp['batch']}; the fastest of "
        f"{s.get('speed_repeats', 1)} interleaved runs of each)",
        "",
        "| steps | uncached tok/s (nfe) | cached tok/s (nfe) | speedup "
        "| network share of time (uncached / cached) |",
        "|---|---|---|---|---|",
    ]
    for k in map(str, s["speed_steps"]):
        c = sp[k]
        lines.append(
            f"| {k} | {c['mdlm']['tokens_per_second']:.0f} ({c['mdlm']['nfe']:.0f}) | "
            f"{c['mdlm_cached']['tokens_per_second']:.0f} ({c['mdlm_cached']['nfe']:.0f}) | "
            f"{c['speedup']:.2f}x | "
            f"{c['mdlm']['network_share']:.0%} / {c['mdlm_cached']['network_share']:.0%} |"
        )
    big = str(max(s["speed_steps"]))
    lines += [
        "",
        f"AR baseline with KV cache: {sp['ar_kv_cache']['tokens_per_second']:.0f} tokens/s "
        f"({sp['ar_kv_cache']['nfe']:.0f} calls per sample). Goal (cached >= 4x uncached at "
        f"{big} steps): **{'met' if r['goals']['cached_4x_at_max_steps'] else 'NOT met'}** "
        f"({sp[big]['speedup']:.2f}x). Caching is exact in law here (no time conditioning): a "
        "row's network call and its candidate-token draws happen only when its tokens changed (the "
        "core's MaskedAncestral), so the samples equal the uncached sampler's in distribution, not "
        f"bit for bit; with L = {sp['context']} a row changes at most {sp['context']} times, so "
        f"the cached sampler needs at most {sp['context'] + 1} network evaluations per sample "
        "whatever the step count. Network share (estimated): nfe x the time of one full-batch "
        f"call ({sp['network_call_seconds'] * 1e3:.0f} ms, cost taken proportional to the rows "
        "evaluated) / wall time. The cached sampler's remaining per-step work is one float64 "
        "reveal coin per position and the driver's bookkeeping; before the core drew candidate "
        "tokens only on refresh, it drew float64 Gumbel noise over B x L x K at every step "
        "(speedup 2.79x at 1024 steps then, commit f4bb9a6).",
        "",
        f"## 4. A {r['matched']['steps']}-step sampler at the quality of "
        f"{r['matched']['reference_steps']}-step ancestral, at equal entropy",
        "",
    ]
    mt = r["matched"]
    base = mt["ancestral_reference"]
    temps = " and ".join(f"{t:g}" for t in s["frontier_temps"])
    lines += [
        f"Target: ancestral with {mt['reference_steps']} steps at temperature 1, "
        f"gen-PPL {base['gen_ppl']:.2f} (standard error of log gen-PPL "
        f"{base['log_gen_ppl_se']:.3f}), entropy {base['entropy']:.3f}. Each candidate runs "
        f"{mt['steps']} steps at temperatures {temps}; its gen-PPL at the target's entropy is "
        "read on the line through those two points (log gen-PPL and temperature linear in "
        f"entropy). {s['n_match']} samples per run, all on the evaluation seed. 'Reaches' = "
        "gen-PPL no higher there, read at most 0.02 nats outside the two measured entropies. "
        "The standard errors of log gen-PPL (per run, over samples) say how much of a "
        "difference is noise.",
        "",
        f"| candidate ({mt['steps']} steps) | T = {temps}: gen-PPL / entropy / SE(log) "
        "| T at target entropy | gen-PPL there | ratio to target | log ratio / its SE | reaches |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, c in mt["candidates"].items():
        pts = "; ".join(
            f"{p['gen_ppl']:.2f} / {p['entropy']:.3f} / {p['log_gen_ppl_se']:.3f}"
            for p in c["points"]
        )
        # the SE of a log ratio of independent runs (the candidate's: its points' mean SE)
        se_c = sum(p["log_gen_ppl_se"] for p in c["points"]) / len(c["points"])
        z = math.log(c["gen_ppl_ratio"]) / math.hypot(base["log_gen_ppl_se"], se_c)
        lines.append(
            f"| {name} | {pts} | {c['temperature']:.3f} | {c['gen_ppl']:.2f} | "
            f"{c['gen_ppl_ratio']:.3f} | {z:+.2f} | {c['goal_met']} |"
        )
    lines += [
        "",
        "A log ratio within about 2 of its standard errors of 0 is a difference this many "
        "samples cannot resolve: a 'reaches' there says the candidate is as good as the "
        "target, not better.",
    ]
    lines += ["", r["conclusion"], ""]
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks/run.py text", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run, minutes)")
    ap.add_argument("--steps", type=int, nargs="+", default=None,
                    help="training steps of every model: the lengths at which the models are "
                    "measured (default: half and all of the size preset's steps); the samplers "
                    "use the longest")  # fmt: skip
    ap.add_argument("--runs", default=str(ROOT / "runs" / "text" / "bench"),
                    help="trained runs, reused when the config is identical")  # fmt: skip
    ap.add_argument("--out", default=None, help="report folder (default docs/benchmarks; "
                    "--quick: <runs>/quick-report)")  # fmt: skip
    ap.add_argument("--gap-trend", type=int, nargs="+", default=None, metavar="N",
                    help="only measure the MDLM/AR gap at these training lengths (AR and MDLM "
                    "trained or reused; writes text-gap.md/.json) and extrapolate it")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference", default=None, help="AR gen-PPL reference (default: shipped)")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    sizes = dict(QUICK if args.quick else FULL)
    points = sorted(set(args.steps or [sizes["steps"] // 2, sizes["steps"]]))
    if points[0] < 1:
        raise SystemExit(f"--steps must be positive, got {args.steps}")
    sizes["steps"] = points[-1]
    runs = Path(args.runs)
    out = Path(args.out) if args.out else (
        runs / "quick-report" if args.quick else ROOT / "docs" / "benchmarks")  # fmt: skip
    start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f}s] {msg}", flush=True)

    from polydiff.core.io import atomic_write_json, atomic_write_text
    from polydiff.text.data import make_tokenizer, prepare_corpus
    from polydiff.text.evaluation import held_out_entropy
    from polydiff.text.method import load_method, shipped_reference

    tok = make_tokenizer("byte")
    corpus = prepare_corpus(SOURCE, tok, sizes["seq_len"], seed=args.seed,
                            cache_dir=runs / "cache")  # fmt: skip
    val = corpus["validation"][: sizes["val_rows"]]
    reference = load_method(args.reference or shipped_reference(), tokenizer=tok)
    if args.gap_trend:
        trend = gap_trend(
            sorted(set(args.gap_trend)), tok, corpus["train"], val, sizes, runs, args.seed, log
        )
        trend.update(
            command=portable(" ".join(["python benchmarks/run.py text", *argv]), runs),
            seed=args.seed,
            seconds=time.perf_counter() - start,
        )
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "text-gap.json", trend)
        atomic_write_text(out / "text-gap.md", gap_markdown(trend))
        log(f"wrote {out / 'text-gap.md'}")
        return 0
    lik: dict[str, dict[str, Any]] = {m: {} for m in METHODS}
    models, params, train_seconds = {}, {}, 0.0
    for m in METHODS:
        cfg = run_config(m, sizes, args.seed)
        for steps in points:
            export, seconds = trained(cfg, tok, corpus["train"], runs, steps, log)
            train_seconds += seconds
            model = load_method(export, tokenizer=tok)
            lik[m][str(steps)] = likelihood(model, val, sizes, args.seed)
            log(f"{m} {steps} steps: {lik[m][str(steps)]}")
        models[m] = model
        params[m] = sum(p.numel() for p in model.net.parameters())
    ratios = {k: lik["mdlm"][k]["ppl_bound"] / lik["ar"][k]["ppl"] for k in lik["ar"]}

    samples = sample_grid(models, reference, tok, sizes, args.seed, log)
    sp = speed(models, sizes, args.seed, log)
    matched = matched_sampler(models, reference, tok, sizes, args.seed, log)
    reached = [k for k, c in matched["candidates"].items() if c["goal_met"]]
    conclusion = (
        "Documented sampler: "
        + ", ".join(f"{k} at T = {matched['candidates'][k]['temperature']:.3f}" for k in reached)
        + f" ({matched['steps']} steps)."
        if reached
        else "Goal NOT met: no candidate reached the target gen-PPL at equal entropy here."
    )
    big = str(max(sizes["speed_steps"]))
    result = {
        "command": portable(" ".join(["python benchmarks/run.py text", *argv]), runs)
        + " (= nox -s bench -- text ...)",
        "seed": args.seed,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)",
        "quick": args.quick,
        "sizes": sizes,
        "parameters": params,
        "runs": {
            m: portable(str(run_folder(runs, run_config(m, sizes, args.seed))), runs)
            for m in METHODS
        },
        "likelihood": lik,
        "reference_ppl": reference.perplexity(val.split(sizes["batch_size"])),
        "held_out_entropy": held_out_entropy(val, (tok.pad_id,)),
        "samples": samples,
        "speed": sp,
        "matched": matched,
        "goals": {
            "mdlm_bound_ratio_by_steps": ratios,
            "mdlm_bound_within_1.3x_ar": ratios[str(sizes["steps"])] <= 1.3,
            "cached_4x_at_max_steps": sp[big]["speedup"] >= 4.0,
            "sampler_64_matches_ancestral_256": bool(reached),
        },
        "conclusion": conclusion,
        "train_seconds": train_seconds,
        "seconds": time.perf_counter() - start,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "text.json", result)
    atomic_write_text(out / "text.md", markdown(result))
    log(f"wrote {out / 'text.md'}")
    return 0
