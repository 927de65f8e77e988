"""Crystals in and out: CDVAE/DiffCSP CSV files (a ``cif`` column), folders of CIF files, pymatgen
structures and a synthetic pyxtal set, held as one compact :class:`Crystals` record (fractional
coordinates, lattices, atomic numbers, atoms per crystal); an element vocabulary; torch-geometric
batches, fully connected within each crystal (as CSPNet); CIF writing.

Every reader checks each structure and raises :class:`~polydiff.core.errors.InputError` naming
it: a malformed CIF, a disordered site, zero volume, overlapping atoms, an element outside the
vocabulary, more atoms than allowed.
"""

from __future__ import annotations

import csv
import io
import sys
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Composition, Element, Lattice, Structure
from torch import Tensor
from torch_geometric.data import Batch, Data

from polydiff.core.errors import InputError
from polydiff.core.io import atomic_write_text

__all__ = [
    "Crystals",
    "ElementVocab",
    "fully_connected_edges",
    "min_distance",
    "parse_compositions",
    "read_cif_folder",
    "read_crystals",
    "read_csv",
    "synthetic",
    "to_batch",
    "to_graphs",
    "write_cifs",
    "write_csv",
]

MIN_DISTANCE = 0.5  # Å: closer atoms overlap (CDVAE's structural-validity threshold)
MIN_VOLUME = 0.1  # Å^3: smaller cells count as zero volume (same protocol)


@dataclass(frozen=True)
class ElementVocab:
    """The atom types a model knows: atomic numbers, type index = position in ``numbers``."""

    numbers: tuple[int, ...] = tuple(range(1, 101))  # H..Fm, as DiffCSP's 100 types

    def __post_init__(self) -> None:
        if len(set(self.numbers)) != len(self.numbers) or not self.numbers:
            raise InputError(f"element vocabulary: needs distinct atomic numbers, got {self}")

    def __len__(self) -> int:
        return len(self.numbers)

    @classmethod
    def from_symbols(cls, symbols: Iterable[str]) -> ElementVocab:
        return cls(tuple(Element(s).Z for s in symbols))

    @classmethod
    def covering(cls, crystals: Crystals) -> ElementVocab:
        """The elements that occur in ``crystals``, sorted by atomic number."""
        return cls(tuple(sorted(set(crystals.numbers.tolist()))))

    def symbols(self) -> list[str]:
        return [Element.from_Z(z).symbol for z in self.numbers]

    def encode(self, numbers: Tensor) -> Tensor:
        """Atomic numbers -> type indices (InputError for an element outside the vocabulary)."""
        match = numbers.long().reshape(-1, 1) == torch.tensor(self.numbers, device=numbers.device)
        known = match.any(-1)
        if not known.all():
            z = int(numbers.reshape(-1)[~known][0])
            symbol = Element.from_Z(z).symbol if 0 < z < 119 else f"Z={z}"
            raise InputError(f"element {symbol} is outside the vocabulary")
        return match.long().argmax(-1).reshape(numbers.shape)

    def decode(self, types: Tensor) -> Tensor:
        return torch.tensor(self.numbers, dtype=torch.long, device=types.device)[types.long()]


@dataclass(frozen=True)
class Crystals:
    """A set of crystals. ``frac`` [N, 3] in [0, 1), ``numbers`` [N] atomic numbers (atoms of all
    crystals concatenated), ``lattice`` [B, 3, 3] with the lattice vectors as rows (Å),
    ``num_atoms`` [B], ``names`` one per crystal (where it came from)."""

    frac: Tensor
    lattice: Tensor
    numbers: Tensor
    num_atoms: Tensor
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.num_atoms)

    @property
    def offsets(self) -> Tensor:
        return torch.cumsum(self.num_atoms, 0) - self.num_atoms

    def __getitem__(self, index: int | slice | Sequence[int]) -> Crystals:
        """A subset (an int gives a set of one)."""
        every = range(len(self))
        if isinstance(index, int | slice):
            keep = [every[index]] if isinstance(index, int) else list(every[index])
        else:
            keep = [every[int(i)] for i in index]
        atoms = torch.cat(
            [torch.arange(o, o + n) for o, n in zip(self.offsets[keep], self.num_atoms[keep])]
            or [torch.zeros(0, dtype=torch.long)]
        )
        return Crystals(
            self.frac[atoms],
            self.lattice[keep],
            self.numbers[atoms],
            self.num_atoms[keep],
            tuple(self.names[i] for i in keep),
        )

    @staticmethod
    def cat(parts: Sequence[Crystals]) -> Crystals:
        """The crystals of ``parts`` in order, as one set."""
        return Crystals(
            torch.cat([p.frac for p in parts]),
            torch.cat([p.lattice for p in parts]),
            torch.cat([p.numbers for p in parts]),
            torch.cat([p.num_atoms for p in parts]),
            tuple(name for p in parts for name in p.names),
        )

    def structure(self, i: int) -> Structure:
        o, n = int(self.offsets[i]), int(self.num_atoms[i])
        return Structure(
            Lattice(self.lattice[i].double().numpy()),
            self.numbers[o : o + n].tolist(),
            self.frac[o : o + n].double().numpy(),
        )

    def structures(self) -> list[Structure]:
        return [self.structure(i) for i in range(len(self))]

    def formulas(self) -> list[str]:
        return [s.composition.formula.replace(" ", "") for s in self.structures()]


def _check(structure: Structure, name: str, vocab, max_atoms, geometry: bool = True) -> None:
    if not structure.is_ordered:
        raise InputError(f"{name}: disordered sites (partial occupancy) are not supported")
    if max_atoms is not None and len(structure) > max_atoms:
        raise InputError(f"{name}: {len(structure)} atoms, more than the maximum {max_atoms}")
    if len(structure) == 0:
        raise InputError(f"{name}: no atoms")
    if geometry and not abs(structure.volume) >= MIN_VOLUME:
        raise InputError(f"{name}: zero volume ({structure.volume:.3g} Å^3)")
    if vocab is not None:
        outside = sorted({s.symbol for s in structure.species} - set(vocab.symbols()))
        if outside:
            raise InputError(f"{name}: element {', '.join(outside)} is outside the vocabulary")
    if geometry and min_distance(structure) < MIN_DISTANCE:
        raise InputError(f"{name}: overlapping atoms ({min_distance(structure):.3f} Å apart)")


def min_distance(structure: Structure) -> float:
    """The shortest distance between two atoms, periodic images included (inf for one atom)."""
    if len(structure) < 2:
        return float("inf")
    return float((structure.distance_matrix + np.eye(len(structure)) * 1e9).min())


def _canonical(structure: Structure, name: str) -> Structure:
    """Niggli-reduced cell rebuilt from its lengths and angles (DiffCSP's canonical frame, a
    defined orientation of the lattice)."""
    try:
        reduced = structure.get_reduced_structure()
    except Exception as err:  # pymatgen's reduction gives up on extreme cells
        raise InputError(f"{name}: Niggli reduction failed ({err})") from None
    return Structure(
        Lattice.from_parameters(*reduced.lattice.parameters),
        reduced.species,
        reduced.frac_coords,
    )


def read_crystals(
    structures: Iterable[Structure],
    names: Iterable[str] | None = None,
    *,
    vocab: ElementVocab | None = None,
    max_atoms: int | None = None,
    niggli: bool = True,
    check_geometry: bool = True,
) -> Crystals:
    """pymatgen structures -> :class:`Crystals`, each checked (InputError naming the structure);
    ``niggli`` puts each cell in DiffCSP's canonical frame. ``check_geometry=False`` accepts
    overlapping atoms and zero volumes (to score samples, whose validity is what is measured)."""
    structures = list(structures)
    names = [f"structure {i}" for i in range(len(structures))] if names is None else list(names)
    frac, lattice, numbers, counts = [], [], [], []
    for s, name in zip(structures, names, strict=True):
        _check(s, name, vocab, max_atoms, check_geometry)
        s = _canonical(s, name) if niggli else s
        frac.append(torch.from_numpy(np.mod(s.frac_coords, 1.0)))
        lattice.append(torch.from_numpy(s.lattice.matrix.copy()))
        numbers.append(torch.tensor(s.atomic_numbers, dtype=torch.long))
        counts.append(len(s))
    if not structures:
        raise InputError("no structures to read")
    return Crystals(
        torch.cat(frac).float() % 1.0,
        torch.stack(lattice).float(),
        torch.cat(numbers),
        torch.tensor(counts, dtype=torch.long),
        tuple(names),
    )


def _parse_cif(text: str, name: str) -> Structure:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Structure.from_str(text, fmt="cif")
    except Exception as err:  # pymatgen raises many types for a bad CIF
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{name}: malformed CIF ({reason})") from None


def read_csv(
    path: str | Path, *, column: str = "cif", limit: int | None = None, **checks
) -> Crystals:
    """A CDVAE/DiffCSP split (CSV with a ``cif`` column, e.g. perov-5, carbon-24, MP-20); crystals
    are named ``<path>:row <i>`` (with the ``material_id`` when present). ``limit``: first rows
    only. ``checks``: options of :func:`read_crystals`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    csv.field_size_limit(sys.maxsize)
    structures, names = [], []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if column not in (reader.fieldnames or []):
            raise InputError(f"{path}: no {column!r} column (columns: {reader.fieldnames})")
        for i, row in enumerate(reader):
            if limit is not None and i >= limit:
                break
            name = f"{path}:row {i}" + (
                f" ({row['material_id']})" if row.get("material_id") else ""
            )
            structures.append(_parse_cif(row[column], name))
            names.append(name)
    return read_crystals(structures, names, **checks)


def read_cif_folder(folder: str | Path, **checks) -> Crystals:
    """Every ``*.cif`` file in ``folder`` (sorted by name), each named by its path."""
    folder = Path(folder)
    files = sorted(folder.glob("*.cif")) if folder.is_dir() else []
    if not files:
        raise InputError(f"{folder}: no .cif files found")
    structures = [_parse_cif(f.read_text(errors="replace"), str(f)) for f in files]
    return read_crystals(structures, [str(f) for f in files], **checks)


def write_cifs(crystals: Crystals, folder: str | Path, prefix: str = "crystal") -> list[Path]:
    """One CIF per crystal, ``<prefix>_<i>_<formula>.cif`` (pymatgen's CifWriter, atomic)."""
    from pymatgen.io.cif import CifWriter

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (s, formula) in enumerate(zip(crystals.structures(), crystals.formulas())):
        path = folder / f"{prefix}_{i:05d}_{formula}.cif"
        atomic_write_text(path, str(CifWriter(s)))
        paths.append(path)
    return paths


def write_csv(crystals: Crystals, path: str | Path) -> Path:
    """A CDVAE/DiffCSP-style CSV (``material_id`` = the crystal's name, ``cif``), atomic."""
    from pymatgen.io.cif import CifWriter

    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(["material_id", "cif"])
    for name, s in zip(crystals.names, crystals.structures()):
        writer.writerow([name, str(CifWriter(s))])
    return atomic_write_text(path, rows.getvalue())


def parse_compositions(compositions, vocab: ElementVocab, max_atoms: int) -> tuple[Tensor, Tensor]:
    """(atomic numbers [N], atoms per crystal [B]) of formula strings, pymatgen Compositions or
    the compositions of a Crystals set; InputError naming a bad one (not a formula, fractional
    counts, an element outside ``vocab``, more than ``max_atoms`` atoms)."""
    if isinstance(compositions, Crystals):
        numbers, counts = compositions.numbers, compositions.num_atoms
        names = list(compositions.names)
    else:
        numbers, counts, names = [], [], [str(f) for f in compositions]
        for name, formula in zip(names, compositions):
            try:
                comp = Composition(formula)
            except Exception:
                comp = None
            if comp is None or not comp.valid:  # invalid: holds dummy species ("Xx")
                raise InputError(f"composition {name}: not a chemical formula")
            amounts = [(el.Z, comp[el]) for el in comp]
            if not amounts or any(a != round(a) or a < 1 for _, a in amounts):
                raise InputError(f"composition {name}: needs whole atom counts")
            atoms = [z for z, a in sorted(amounts) for _ in range(round(a))]
            numbers += atoms
            counts.append(len(atoms))
        numbers, counts = torch.tensor(numbers), torch.tensor(counts)
    if not names:
        raise InputError("no compositions given")
    for o, k, name in zip((counts.cumsum(0) - counts).tolist(), counts.tolist(), names):
        if k > max_atoms:
            raise InputError(f"composition {name}: {k} atoms, more than the maximum {max_atoms}")
        try:
            vocab.encode(numbers[o : o + k])
        except InputError as err:
            raise InputError(f"composition {name}: {err}") from None
    return numbers.long(), counts.long()


def synthetic(
    n: int,
    *,
    seed: int = 0,
    elements: Sequence[str] = ("Li", "O", "Si", "Mg"),
    max_atoms: int = 8,
    space_groups: Sequence[int] = (1, 2, 12, 62, 139, 166, 194, 221, 225, 229),
) -> Crystals:
    """``n`` random symmetric crystals from pyxtal (two elements from ``elements``, at most
    ``max_atoms`` atoms in the cell), seeded: an offline set for smoke runs and tests."""
    from pyxtal import pyxtal
    from pyxtal.symmetry import Group

    rng = np.random.default_rng(seed)
    structures: list[Structure] = []
    attempts = 0
    while len(structures) < n:
        attempts += 1
        if attempts > 50 * n:
            raise RuntimeError(f"pyxtal made only {len(structures)} of {n} crystals")
        group = Group(int(rng.choice(space_groups)))
        pair = [str(e) for e in rng.choice(list(elements), size=2, replace=False)]
        mult = [int(rng.choice(sorted({len(w) for w in group.wyckoffs}))) for _ in pair]
        counts = [m * int(rng.integers(1, 3)) for m in mult]
        if sum(counts) > max_atoms:
            continue
        crystal = pyxtal()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                crystal.from_random(
                    3, group.number, pair, counts, random_state=int(rng.integers(2**31))
                )
            except Exception:  # pyxtal refuses compositions its Wyckoff sites cannot hold
                continue
        if not crystal.valid:
            continue
        s = crystal.to_pymatgen()
        if min_distance(s) < MIN_DISTANCE:
            continue
        structures.append(s)
    return read_crystals(structures, [f"synthetic {i}" for i in range(n)], max_atoms=max_atoms)


def fully_connected_edges(num_atoms: Tensor) -> Tensor:
    """edge_index [2, sum n^2] joining every ordered pair of atoms (self pairs included, as
    CSPNet) within each crystal of a batch whose atoms are concatenated in crystal order."""
    num_atoms = num_atoms.long()
    per_crystal = num_atoms**2
    crystal = torch.repeat_interleave(
        torch.arange(len(num_atoms), device=num_atoms.device), per_crystal
    )
    first_edge = torch.cumsum(per_crystal, 0) - per_crystal
    local = torch.arange(int(per_crystal.sum()), device=num_atoms.device) - first_edge[crystal]
    n = num_atoms[crystal]
    first_atom = (torch.cumsum(num_atoms, 0) - num_atoms)[crystal]
    return torch.stack([first_atom + local // n, first_atom + local % n])


def to_graphs(crystals: Crystals, vocab: ElementVocab) -> list[Data]:
    """One torch-geometric graph per crystal (a dataset for ``torch_geometric.loader.DataLoader``):
    ``frac`` [n, 3], ``types`` [n] (vocabulary indices), ``lattice`` [1, 3, 3], ``num_atoms`` [1],
    ``edge_index`` fully connected."""
    try:
        types = vocab.encode(crystals.numbers)
    except InputError:
        for i in range(len(crystals)):  # name the crystal that holds the unknown element
            try:
                vocab.encode(crystals[i].numbers)
            except InputError as err:
                raise InputError(f"{crystals.names[i]}: {err}") from None
        raise
    graphs = []
    for i, (o, n) in enumerate(zip(crystals.offsets.tolist(), crystals.num_atoms.tolist())):
        graphs.append(
            Data(
                frac=crystals.frac[o : o + n],
                types=types[o : o + n],
                lattice=crystals.lattice[i : i + 1],
                num_atoms=crystals.num_atoms[i : i + 1],
                edge_index=fully_connected_edges(crystals.num_atoms[i : i + 1]),
                num_nodes=n,
            )
        )
    return graphs


def to_batch(crystals: Crystals, vocab: ElementVocab) -> Batch:
    """All of ``crystals`` as one torch-geometric batch (see :func:`to_graphs`; ``batch`` gives
    the crystal of each atom)."""
    return Batch.from_data_list(to_graphs(crystals, vocab))
