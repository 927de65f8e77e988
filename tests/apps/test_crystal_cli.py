"""End-to-end runs of `polydiff crystal train|generate|predict|evaluate|demo` at tiny sizes, and
the bad-input matrix (exit code 2, one stderr line naming the file / structure / option, nothing
written but Hydra's own files).

The verbs run in-process through `polydiff.apps.cli.dispatch` (the same Hydra path as the console
script, without paying the torch / pymatgen import per call); the demo runs the console script.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from helpers import check_demo_report
from pymatgen.core import Lattice, Structure

from polydiff.apps.cli import dispatch
from polydiff.core.method import FORMAT
from polydiff.crystal.data import read_cif_folder, read_crystals, read_csv, write_csv
from polydiff.crystal.metrics import csp_match, random_coordinates, structural_validity
from polydiff.crystal.workflow import dataset_loss, load_model

TINY = ("model.hidden=16", "model.layers=1", "train.batch_size=4", "train.progress_bar=false")
HYDRA_FILES = {".hydra", "polydiff.log"}


def _perovskite(a: str, b: str, length: float) -> Structure:
    coords = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    return Structure(Lattice.cubic(length), [a, b, "O", "O", "O"], coords)


def _rock_salt(a: str, b: str, length: float) -> Structure:
    return Structure(Lattice.cubic(length), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder with data.csv (12 small crystals), tiny CSP and generation models trained on it
    and a few bad inputs."""
    root = tmp_path_factory.mktemp("crystal")
    pairs = [("Sr", "Ti"), ("Ba", "Ti"), ("Ca", "Ti"), ("Sr", "Zr"), ("Ba", "Zr"), ("Ca", "Zr")]
    structures = [_perovskite(a, b, 3.9 + 0.05 * i) for i, (a, b) in enumerate(pairs)]
    structures += [_rock_salt(a, "O", 2.6 + 0.1 * i) for i, a in enumerate(["Ca", "Sr", "Ba"])]
    structures += [
        _perovskite("Sr", "Ti", 4.1),
        _rock_salt("Ba", "O", 2.9),
        _rock_salt("Ca", "O", 3),
    ]
    write_csv(
        read_crystals(structures, [f"c{i}" for i in range(len(structures))]), root / "data.csv"
    )
    for task in ("csp", "gen"):
        out = root / task
        code = dispatch(["crystal", "train", str(root / "data.csv"), f"task={task}", *TINY,
                         "train.steps=4", f"hydra.run.dir={out}"])  # fmt: skip
        assert code == 0
    _bad_inputs(root)
    return root


def _bad_inputs(root: Path) -> None:
    (root / "malformed").mkdir()
    (root / "malformed" / "broken.cif").write_text("data_x\n_cell_length_a 3\nloop_\n_atom_site\n")
    (root / "overlap").mkdir()
    s = Structure(Lattice.cubic(4), ["Sr", "Ti"], [[0, 0, 0], [0.05, 0, 0]])
    (root / "overlap" / "close.cif").write_text(s.to(fmt="cif"))
    flat = Structure(Lattice.cubic(0.3), ["Sr"], [[0, 0, 0]])  # 0.027 Å^3
    write_rows(root / "flat.csv", [("material_id", "cif"), ("flat", flat.to(fmt="cif"))])
    write_rows(root / "nocif.csv", [("material_id", "structure"), ("x", s.to(fmt="cif"))])
    big = Structure(Lattice.cubic(12), ["Sr"] * 27, [[i / 3, j / 3, k / 3] for i in range(3)
                    for j in range(3) for k in range(3)])  # fmt: skip
    (root / "big").mkdir()
    (root / "big" / "big.cif").write_text(big.to(fmt="cif"))
    (root / "afile").write_text("a regular file\n")
    (root / "empty_model").mkdir()
    (root / "text_model").mkdir()
    config = {"format": FORMAT, "domain": "text", "method": "mdlm", "config": {}}
    (root / "text_model" / "config.json").write_text(json.dumps(config))


def write_rows(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_train_exports_a_model_prints_its_loss_and_resumes(work: Path, tmp_path: Path):
    csp = work / "csp"
    info = _json(csp / "train.json")
    assert info["steps"] == 4 and Path(info["model"]) == csp / "model"
    model = load_model(csp / "model")
    assert model.config.task == "csp" and model.config.max_atoms == 5
    assert model.vocab.symbols() == ["O", "Ca", "Ti", "Sr", "Zr", "Ba"]
    # the printed loss is the exported (EMA) model's seeded mean loss over the training set
    crystals = read_csv(work / "data.csv")
    losses = dataset_loss(model, crystals, seed=0)
    assert info["loss"] == pytest.approx(losses["loss"], rel=1e-5) and math.isfinite(info["loss"])
    assert set(info["parts"]) == {"coord", "lattice"}
    assert set(_json(work / "gen" / "train.json")["parts"]) == {"coord", "lattice", "type"}
    # rerunning with more steps in the same run folder continues from last.ckpt
    out = tmp_path / "resume"
    args = ["crystal", "train", str(work / "data.csv"), *TINY, f"hydra.run.dir={out}"]
    assert dispatch([*args, "train.steps=2"]) == 0
    first = (out / "model" / "model.safetensors").read_bytes()
    assert dispatch([*args, "train.steps=3"]) == 0
    assert _json(out / "train.json")["steps"] == 3
    assert (out / "model" / "model.safetensors").read_bytes() != first


def test_generate_writes_cifs_and_csv_with_their_validity(work: Path, tmp_path: Path):
    out = tmp_path / "gen"
    code = dispatch(["crystal", "generate", str(work / "gen" / "model"), "n=3",
                     f"hydra.run.dir={out}"])  # fmt: skip
    assert code == 0
    folder = out / "structures"
    cifs = read_cif_folder(folder, niggli=False, check_geometry=False)
    table = read_csv(folder / "structures.csv", niggli=False, check_geometry=False)
    assert len(cifs) == len(table) == 3
    assert cifs.formulas() == table.formulas()
    torch.testing.assert_close(cifs.lattice, table.lattice, atol=1e-4, rtol=0)
    valid = structural_validity(cifs)
    log = (out / "polydiff.log").read_text()
    assert f"structural validity {100 * sum(valid) / 3:.1f} % ({sum(valid)} of 3)" in log
    # the same seed gives the same crystals as the library call
    model = load_model(work / "gen" / "model")
    direct = model.generate(3, generator=torch.Generator().manual_seed(0))
    assert direct.formulas() == cifs.formulas()


def test_predict_formulas_and_csv_then_evaluate_against_the_library(work: Path, tmp_path: Path):
    model = work / "csp" / "model"
    out = tmp_path / "formulas"
    code = dispatch(["crystal", "predict", str(model), "formulas=[SrTiO3,BaO]",
                     f"hydra.run.dir={out}"])  # fmt: skip
    assert code == 0
    names = sorted(p.name for p in (out / "structures").glob("*.cif"))
    assert names == ["crystal_00000_Sr1Ti1O3.cif", "crystal_00001_Ba1O1.cif"]
    # CSP of the CSV's compositions, scored against the CSV itself
    pred = tmp_path / "pred"
    code = dispatch(["crystal", "predict", str(model), f"compositions={work / 'data.csv'}",
                     "limit=5", f"output={pred}", f"hydra.run.dir={tmp_path / 'p'}"])  # fmt: skip
    assert code == 0 and not (tmp_path / "p" / "structures").exists()
    ev, data = tmp_path / "ev", work / "data.csv"
    code = dispatch(["crystal", "evaluate", str(pred / "structures.csv"), f"reference={data}",
                     "limit=5", f"hydra.run.dir={ev}"])  # fmt: skip
    assert code == 0
    metrics = _json(ev / "metrics.json")
    predicted = read_csv(pred / "structures.csv", niggli=False, check_geometry=False)
    reference = read_csv(work / "data.csv", limit=5, niggli=False)
    score = csp_match(predicted, reference)
    base = csp_match(random_coordinates(reference, torch.Generator().manual_seed(0)), reference)
    assert metrics["n"] == 5 and metrics["match_rate"] == score.match_rate
    assert metrics["baseline_match_rate"] == base.match_rate
    assert metrics["validity"] == sum(structural_validity(predicted)) / 5
    # the reference scored against itself: every structure matches with zero displacement
    code = dispatch(["crystal", "evaluate", str(data), f"reference={data}",
                     f"hydra.run.dir={tmp_path / 'self'}"])  # fmt: skip
    metrics = _json(tmp_path / "self" / "metrics.json")
    assert code == 0 and metrics["match_rate"] == 1.0 and metrics["rmse"] < 1e-6
    assert metrics["validity"] == 1.0 and len(metrics["valid"]) == 12


def test_predict_with_a_shipped_model_by_name(tmp_path: Path):
    """model=crysbfn-perov5 (no such folder here) is the shipped perov-5 CSP model."""
    out = tmp_path / "shipped"
    code = dispatch(["crystal", "predict", "crysbfn-perov5", "formulas=[SrTiO3,BaZrO3]",
                     f"hydra.run.dir={out}"])  # fmt: skip
    assert code == 0
    predicted = read_csv(out / "structures" / "structures.csv", niggli=False, check_geometry=False)
    assert predicted.formulas() == ["Sr1Ti1O3", "Ba1Zr1O3"]


def test_predict_sampler_and_candidates_are_the_library_options(tmp_path: Path):
    """sampler=bayes candidates=2 writes what the library's predict returns with them."""
    out = tmp_path / "bayes"
    code = dispatch(["crystal", "predict", "crysbfn-perov5", "formulas=[SrTiO3,BaZrO3]",
                     "sampler=bayes", "candidates=2", f"hydra.run.dir={out}"])  # fmt: skip
    assert code == 0
    written = read_csv(out / "structures" / "structures.csv", niggli=False, check_geometry=False)
    expected = load_model("crysbfn-perov5").predict(
        ["SrTiO3", "BaZrO3"],
        generator=torch.Generator().manual_seed(0),
        sampler="bayes",
        candidates=2,
    )
    same = csp_match(written, expected)  # the CSV lists atoms by species: compare structures
    assert same.match_rate == 1.0 and same.rmse < 1e-4


def test_diffcsp_trains_and_predicts(work: Path, tmp_path: Path):
    out = tmp_path / "diffcsp"
    code = dispatch(["crystal", "train", str(work / "data.csv"), "method=diffcsp",
                     "model.steps=3", "train.steps=2", *TINY, f"hydra.run.dir={out}"])  # fmt: skip
    assert code == 0
    code = dispatch(["crystal", "predict", str(out / "model"), "formulas=[CaZrO3]",
                     f"hydra.run.dir={tmp_path / 'p'}"])  # fmt: skip
    assert code == 0 and len(list((tmp_path / "p" / "structures").glob("*.cif"))) == 1


BAD = [
    ("train", ("data.source=malformed",), "broken.cif: malformed CIF"),
    ("train", ("data.source=overlap",), "close.cif: overlapping atoms"),
    ("train", ("data.source=flat.csv",), "flat.csv:row 0 (flat): zero volume"),
    ("train", ("data.source=big",), "big.cif: 27 atoms, more than the maximum 24"),
    ("train", ("data.source=nocif.csv",), "nocif.csv: no 'cif' column"),
    ("train", ("data.source=missing.csv",), "missing.csv: no such file or folder"),
    ("train", ("train.steps=0",), "train.steps must be a positive integer, got 0"),
    ("train", ("train.lr=-1",), "train.lr must be positive"),
    ("train", ("train.ema_warmup=maybe",), "train.ema_warmup must be true or false"),
    ("train", ("method=magic",), "method must be one of ['crysbfn', 'diffcsp'], got 'magic'"),
    ("train", ("method=diffcsp", "task=gen"), "task: diffcsp predicts structures"),
    ("train", ("export=afile/model",), "export=", "afile is a regular file"),
    ("predict", ("model=csp/model", "formulas=[UO2]"), "UO2: element U is outside"),
    ("predict", ("model=csp/model", "formulas=[Sr2Ti2O6]"), "10 atoms, more than the maximum 5"),
    ("predict", ("model=csp/model", "formulas=[Qq2]"), "composition Qq2: not a chemical formula"),
    ("predict", ("model=csp/model",), "give either formulas=[...] or compositions="),
    ("predict", ("model=csp/model", "compositions=nocif.csv"), "nocif.csv: no 'cif' column"),
    ("predict", ("model=csp/model", "formulas=[SrO]", "batch_size=0"), "batch_size must be >= 1"),
    ("predict", ("model=csp/model", "formulas=[SrO]", "sampler=ode"), "sampler must be one of"),
    ("predict", ("model=csp/model", "formulas=[SrO]", "candidates=0"), "candidates must be a"),
    ("generate", ("model=gen/model", "n=0"), "n must be a positive integer, got 0"),
    ("generate", ("model=csp/model",), "generate needs a model trained for task 'gen'"),
    ("generate", ("model=empty_model",), "empty_model: not a crystal model"),
    ("generate", ("model=text_model",), "a text method, not a crystal one"),
    ("generate", ("model=nowhere",), "nowhere: no such model folder"),
    ("generate", ("model=gen/model", "output=afile/out"), "output=", "afile is a regular file"),
    ("evaluate", ("structures=malformed",), "broken.cif: malformed CIF"),
    ("evaluate", ("structures=data.csv", "reference=data.csv", "limit=0"), "limit must be a"),
    ("evaluate", ("structures=csp/train.json",), "train.json: no 'cif' column"),
]


@pytest.mark.parametrize(("verb", "args", *("needle",)), [(v, a, n[-1]) for v, a, *n in BAD])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(work, verb, args, needle, capsys,
                                                            monkeypatch, tmp_path):  # fmt: skip
    monkeypatch.chdir(work)
    out = tmp_path / "run"
    capsys.readouterr()
    small = ("data.n_synthetic=4",) if verb == "train" else ()
    code = dispatch(["crystal", verb, *args, *small, f"hydra.run.dir={out}"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and needle in err, err
    assert {p.name for p in out.iterdir()} <= HYDRA_FILES  # nothing half-written
    assert not (work / "afile").is_dir()


def test_quick_demo_stage_end_to_end(polydiff, tmp_path: Path):
    """`polydiff demo domains=[crystal] quick=true`: one report row, the formula tables and the
    metrics of both tasks."""
    out = polydiff("demo", "domains=[crystal]", "quick=true")
    assert out.returncode == 0, out.stderr[-3000:]
    (run,) = (tmp_path / "runs" / "demo").iterdir()
    report = check_demo_report(run, "crystal", [])
    metrics = _json(run / "crystal" / "metrics.json")
    gen, csp = metrics["gen"], metrics["csp"]
    assert gen["steps"] == csp["steps"] == 20 and len(gen["formulas"]) == len(csp["formulas"]) == 4
    for formula, ok in zip(gen["formulas"], gen["valid"]):
        assert f"| {formula} | {'yes' if ok else 'no'} |" in report
    assert gen["validity"] == sum(gen["valid"]) / 4
    assert 0 <= csp["match_rate"] <= 1 and 0 <= csp["baseline_match_rate"] <= 1
    assert "random-coordinate baseline" in report
    assert len(list((run / "crystal" / "csp" / "structures").glob("*.cif"))) == 4
