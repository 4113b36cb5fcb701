"""``PhononReference``: harmonic ADPs of a crystal from phonopy force constants.

The façade wires three pieces together: force constants (phonopy finite displacements, forces
from any ASE calculator, cached on disk), the phonon modes on a q-mesh (phonopy's dynamical
matrix), and our own eqns (2)–(3) (:mod:`phonon_ref.harmonic`).

The mesh sum comes out low and its deficit falls only as 1/n (the Γ cell is left out, and its
acoustic modes carry a share of U proportional to the cell's size; the README gives measured
deficits). :meth:`PhononReference.run_extrapolated` (``adps(..., extrapolate=True)``) removes
that bias with a second, coarser mesh. The default mesh length of 100 Å gives
n_i = ceil(100 Å · |b_i|), rounded up to odd.
Use odd meshes: even ones break the symmetry of body-centred lattices (and make phonopy's own
code stop with an assertion; see :mod:`phonon_ref.harmonic`); lengths always give odd meshes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Literal

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator
from numpy.typing import ArrayLike, NDArray
from tqdm.auto import tqdm

from ase_cartnet.adp import u_cart_to_u_cif
from ase_cartnet.errors import InputError
from phonon_ref.calculators import calculator_label
from phonon_ref.fc_cache import cache_file, cache_key, load_force_constants, save_force_constants
from phonon_ref.forces import compute_forces
from phonon_ref.grids import (
    DEFAULT_MESH_LENGTH,
    MeshSpec,
    SupercellSpec,
    resolve_mesh,
    resolve_supercell,
)
from phonon_ref.harmonic import (
    DEFAULT_FREQ_MIN,
    DEFAULT_IMAGINARY_TOL,
    HarmonicADPs,
    HarmonicSum,
    ImaginaryModesWarning,
)

log = logging.getLogger(__name__)

DEFAULT_DISPLACEMENT = 0.01
FC_METHODS = ("finite", "symfc")
"""Force-constant methods: phonopy's systematic finite displacements, or symfc's symmetry-
adapted least-squares fit to supercells with every atom displaced in a random direction."""
"""Å, phonopy's default finite displacement."""

_MESH_CHUNK_BYTES = 64 * 2**20
"""Eigenvectors diagonalised per batch of q-points (bounds memory on fine meshes)."""

OnImaginary = Literal["warn", "raise", "ignore"]


def atoms_to_phonopy(atoms: Atoms):
    """PhonopyAtoms of ``atoms`` (cell, fractional positions, symbols and **ASE's masses**)."""
    from phonopy.structure.atoms import PhonopyAtoms

    return PhonopyAtoms(
        symbols=atoms.get_chemical_symbols(),
        cell=np.asarray(atoms.cell[:], dtype=float),
        scaled_positions=atoms.get_scaled_positions(wrap=False),
        masses=atoms.get_masses(),
    )


def phonopy_to_atoms(cell) -> Atoms:
    """ASE Atoms (periodic) of a PhonopyAtoms, keeping its masses."""
    return Atoms(
        symbols=list(cell.symbols),
        cell=np.asarray(cell.cell, dtype=float),
        scaled_positions=np.asarray(cell.scaled_positions, dtype=float),
        masses=np.asarray(cell.masses, dtype=float),
        pbc=True,
    )


def _odd_below(n: int) -> int:
    """The odd mesh number nearest to 2n/3 (at least 1, and below n when n ≥ 3)."""
    m = max(1, round(2 * n / 3))
    m = m if m % 2 else m - 1 if m > 1 else 1
    return min(m, n - 2) if n >= 3 else n


def _check_structure(atoms: Atoms) -> None:
    from ase_cartnet.validation import validate_structure

    validate_structure(atoms, require_pbc=True)


class PhononReference:
    """Harmonic-approximation ADPs (eqns 2–3 of the CartNet paper) of every atom of a crystal.

    >>> ref = PhononReference(atoms, calculator=EMT(), supercell=(4, 4, 4), mesh=(15, 15, 15))
    >>> ref.adps(300.0)            # (N, 3, 3) Cartesian U in Å², atoms in the input order
    >>> ref.u_cif(300.0)           # (N, 3, 3) IUCr U^ij in Å²
    >>> ref.frequency_range()      # (min, max) in THz; negative = imaginary

    Parameters
    ----------
    atoms
        the crystal (periodic in 3D). It is used **as the primitive cell** (phonopy's
        ``primitive_matrix="P"``), so every atom of the input gets an ADP, in the input order
        and in the Cartesian frame of ``atoms.positions``. Masses are ``atoms.get_masses()``.
        It should be relaxed with the same calculator: force constants at a non-equilibrium
        geometry give imaginary modes.
    calculator
        an ASE calculator, or a name understood by
        :func:`phonon_ref.calculators.get_calculator` ("emt", "chgnet", "module:factory").
        Pass a name when ``executor`` runs in other processes (one model load per worker).
    supercell
        None (every perpendicular width ≥ 10 Å), a float (that minimum width in Å),
        (n1, n2, n3), or a 3×3 integer matrix.
    mesh
        q-mesh: (n1, n2, n3), one int, or a float length in Å (default 100 Å → odd n_i;
        see the module docstring for convergence).
    displacement
        finite displacement in Å (phonopy's default 0.01).
    cache_dir
        directory of the force-constant cache (compressed npz). With a cache hit no
        force is computed; new temperatures and meshes never need one.
    executor
        any ``concurrent.futures.Executor`` for the force calls (one task per
        displaced supercell), e.g. ``dask.distributed.Client(...).get_executor()``.
    progress
        show tqdm progress bars.
    calculator_name
        label of the calculator in the cache key (default: its name, or the
        class and parameters of an object — set it for ML models loaded from a checkpoint).
    freq_min, imaginary_tol
        THz, see :func:`phonon_ref.harmonic.harmonic_adps`.
    on_imaginary
        "warn" (default), "raise" (:class:`~phonon_ref.harmonic.ImaginaryModesError`)
        or "ignore" when modes below −imaginary_tol are found; they are never summed.
    subtract_residual_forces
        subtract the forces of the undisplaced supercell from every
        displaced one (one extra force call; removes the error of an imperfect relaxation).
    symprec
        phonopy's symmetry tolerance in Å (fewer displacements for symmetric crystals).
    fc_method
        "finite" (phonopy's systematic displacements, one atom at a time) or "symfc"
        (symfc's least-squares fit to supercells with every atom displaced by
        ``displacement`` in a random direction; fewer force calls for low-symmetry cells).
    n_snapshots
        symfc only: how many random supercells (default: symfc's own estimate).
    random_seed
        symfc only: seed of the random displacement directions.

    Notes
    -----
    Not meant for: molecules or slabs (no 3D periodicity), dynamically unstable structures
    (the harmonic ADPs diverge), strongly anharmonic solids near melting (the harmonic
    approximation underestimates U). Non-analytic (LO–TO) corrections apply only when a
    phonopy calculation with BORN is loaded (:meth:`from_phonopy_files`).
    """

    def __init__(
        self,
        atoms: Atoms,
        calculator: str | BaseCalculator | None = None,
        supercell: SupercellSpec = None,
        mesh: MeshSpec = DEFAULT_MESH_LENGTH,
        displacement: float = DEFAULT_DISPLACEMENT,
        cache_dir: str | os.PathLike | None = None,
        executor: Executor | None = None,
        progress: bool = True,
        *,
        calculator_name: str | None = None,
        freq_min: float = DEFAULT_FREQ_MIN,
        imaginary_tol: float = DEFAULT_IMAGINARY_TOL,
        on_imaginary: OnImaginary = "warn",
        subtract_residual_forces: bool = True,
        symprec: float = 1e-5,
        fc_method: str = "finite",
        n_snapshots: int | None = None,
        random_seed: int = 0,
    ) -> None:
        if calculator is None:
            raise InputError(
                "PhononReference needs a calculator (an ASE calculator or a name such as "
                "'emt'); for an existing phonopy calculation use PhononReference."
                "from_phonopy_files, from_phonopy_yaml or from_force_constants"
            )
        _check_structure(atoms)
        if not (math.isfinite(displacement) and displacement > 0):
            raise InputError(f"displacement must be a positive distance in Å, got {displacement}")
        if fc_method not in FC_METHODS:
            raise InputError(f"fc_method must be one of {FC_METHODS}, not {fc_method!r}")
        if n_snapshots is not None and (fc_method != "symfc" or int(n_snapshots) < 1):
            raise InputError(
                "n_snapshots (a positive number of supercells) is for fc_method='symfc'"
            )
        self._init_settings(mesh, freq_min, imaginary_tol, on_imaginary, progress)
        self._atoms = atoms.copy()
        self._atoms.calc = None
        self._supercell_matrix = resolve_supercell(atoms.cell[:], supercell)
        self._fc_method = fc_method
        self._displacement = float(displacement)
        self._n_force_calls = 0
        self._cache_file: Path | None = None
        self._cache_hit = False
        label = calculator_name or calculator_label(calculator)
        settings = {"subtract_residual_forces": bool(subtract_residual_forces), "symprec": symprec}
        if fc_method != "finite":  # keeps the keys of existing finite-displacement caches
            settings.update(fc_method=fc_method, n_snapshots=n_snapshots, random_seed=random_seed)
        if cache_dir is not None:
            key = cache_key(atoms, label, self._supercell_matrix, displacement, settings)
            self._cache_file = cache_file(cache_dir, atoms, key)
        if self._cache_file is not None and self._cache_file.is_file():
            log.info("force constants from cache %s", self._cache_file)
            phonon = load_force_constants(self._cache_file, symprec=symprec)
            self._cache_hit = True
        else:
            phonon = self._compute_force_constants(
                calculator,
                executor,
                subtract_residual_forces,
                symprec,
                n_snapshots=n_snapshots,
                random_seed=random_seed,
            )
            if self._cache_file is not None:
                save_force_constants(phonon, self._cache_file)
        self._phonon = phonon
        self._check_primitive_order()

    # ------------------------------------------------------------------ construction helpers

    def _init_settings(
        self,
        mesh: MeshSpec,
        freq_min: float,
        imaginary_tol: float,
        on_imaginary: OnImaginary,
        progress: bool,
    ) -> None:
        if on_imaginary not in ("warn", "raise", "ignore"):
            raise InputError(
                f"on_imaginary must be 'warn', 'raise' or 'ignore', not {on_imaginary!r}"
            )
        self._mesh_spec = mesh
        self._freq_min = float(freq_min)
        self._imaginary_tol = float(imaginary_tol)
        self._on_imaginary = on_imaginary
        self._progress = bool(progress)
        self._results: dict[tuple, HarmonicADPs] = {}

    def _compute_force_constants(
        self,
        calculator: str | BaseCalculator,
        executor: Executor | None,
        subtract_residual_forces: bool,
        symprec: float,
        n_snapshots: int | None = None,
        random_seed: int = 0,
    ):
        from phonopy import Phonopy

        phonon = Phonopy(
            atoms_to_phonopy(self._atoms),
            supercell_matrix=self._supercell_matrix,
            primitive_matrix="P",
            symprec=symprec,
            log_level=0,
        )
        if self._fc_method == "symfc":
            # every atom displaced by the same distance in a random direction; "auto" lets symfc
            # choose how many supercells its fit needs for this symmetry and cell
            phonon.generate_displacements(
                distance=self._displacement,
                number_of_snapshots="auto" if n_snapshots is None else int(n_snapshots),
                random_seed=int(random_seed),
            )
        else:
            phonon.generate_displacements(distance=self._displacement)
        supercells = [phonopy_to_atoms(s) for s in phonon.supercells_with_displacements]
        if subtract_residual_forces:
            supercells.append(phonopy_to_atoms(phonon.supercell))
        log.info(
            "%s: %d displaced supercells of %d atoms",
            self._atoms.get_chemical_formula(),
            len(phonon.supercells_with_displacements),
            len(phonon.supercell),
        )
        forces = compute_forces(supercells, calculator, executor, progress=self._progress)
        self._n_force_calls = len(supercells)
        if subtract_residual_forces:
            forces = forces[:-1] - forces[-1]
        phonon.forces = forces
        if self._fc_method == "symfc":
            # symfc's fit already obeys the space group and the acoustic sum rule
            phonon.produce_force_constants(fc_calculator="symfc", show_drift=False)
        else:
            phonon.produce_force_constants(show_drift=False)
            phonon.symmetrize_force_constants(show_drift=False)
        return phonon

    def _check_primitive_order(self) -> None:
        """phonopy's primitive must be the input cell, atom by atom (primitive_matrix="P")."""
        prim = self._phonon.primitive
        same = len(prim) == len(self._atoms) and np.array_equal(prim.numbers, self._atoms.numbers)
        if same:
            diff = np.asarray(prim.scaled_positions) - self._atoms.get_scaled_positions(wrap=False)
            diff -= np.round(diff)
            same = bool(np.abs(diff).max() < 1e-6) and np.allclose(
                prim.cell, self._atoms.cell[:], atol=1e-8
            )
        if not same:  # pragma: no cover - guards a phonopy behaviour change
            raise RuntimeError("phonopy's primitive cell differs from the input cell")

    @classmethod
    def from_phonopy(
        cls,
        phonon,
        mesh: MeshSpec = DEFAULT_MESH_LENGTH,
        progress: bool = True,
        *,
        freq_min: float = DEFAULT_FREQ_MIN,
        imaginary_tol: float = DEFAULT_IMAGINARY_TOL,
        on_imaginary: OnImaginary = "warn",
    ) -> PhononReference:
        """Wrap a ``phonopy.Phonopy`` object that has force constants. The ADPs are those of
        its *primitive* cell (``phonon.primitive``), with phonopy's masses and NAC settings."""
        if getattr(phonon, "force_constants", None) is None:
            raise InputError("the Phonopy object has no force constants (produce them first)")
        self = cls.__new__(cls)
        self._init_settings(mesh, freq_min, imaginary_tol, on_imaginary, progress)
        self._phonon = phonon
        self._atoms = phonopy_to_atoms(phonon.primitive)
        self._supercell_matrix = np.asarray(phonon.supercell_matrix, dtype=np.int64)
        self._displacement = float("nan")
        self._n_force_calls = 0
        self._cache_file = None
        self._cache_hit = False
        return self

    @classmethod
    def from_phonopy_yaml(
        cls,
        path: str | os.PathLike,
        force_sets: str | os.PathLike | None = None,
        born: str | os.PathLike | None = None,
        mesh: MeshSpec = DEFAULT_MESH_LENGTH,
        primitive_matrix: str | ArrayLike = "P",
        symmetrize_fc: bool = True,
        fc_calculator: str | None = None,
        **kwargs,
    ) -> PhononReference:
        """From a phonopy yaml: ``phonopy_disp.yaml`` (with ``force_sets``),
        ``phonopy_params.yaml`` (forces inside) or ``phonopy.yaml`` with force constants.

        ``primitive_matrix="P"`` (default) gives ADPs for every atom of the yaml's unit cell;
        pass phonopy's matrix or "auto" to work in its primitive cell. ``born`` switches on
        the non-analytic correction. ``fc_calculator="symfc"`` is needed for random-
        displacement datasets. Further keywords go to :meth:`from_phonopy`.
        """
        import phonopy

        path = Path(path)
        if not path.is_file():
            raise InputError(f"no such phonopy yaml: {path}")
        load_kwargs = {}
        for name, value in (("force_sets_filename", force_sets), ("born_filename", born)):
            if value is not None:
                if not Path(value).is_file():
                    raise InputError(f"no such file: {value}")
                load_kwargs[name] = value
        phonon = phonopy.load(
            path,
            primitive_matrix=primitive_matrix,
            symmetrize_fc=symmetrize_fc,
            fc_calculator=fc_calculator,
            log_level=0,
            **load_kwargs,
        )
        return cls.from_phonopy(phonon, mesh=mesh, **kwargs)

    @classmethod
    def from_phonopy_files(
        cls,
        phonopy_yaml: str | os.PathLike,
        force_sets: str | os.PathLike,
        born: str | os.PathLike | None = None,
        mesh: MeshSpec = DEFAULT_MESH_LENGTH,
        **kwargs,
    ) -> PhononReference:
        """From ``phonopy_disp.yaml`` + ``FORCE_SETS`` (+ ``BORN``) of a finished phonopy run
        (DFT or otherwise); no calculator is needed. See :meth:`from_phonopy_yaml`."""
        return cls.from_phonopy_yaml(
            phonopy_yaml, force_sets=force_sets, born=born, mesh=mesh, **kwargs
        )

    @classmethod
    def from_force_constants(
        cls,
        atoms: Atoms,
        force_constants: ArrayLike | str | os.PathLike,
        supercell: ArrayLike,
        mesh: MeshSpec = DEFAULT_MESH_LENGTH,
        symprec: float = 1e-5,
        **kwargs,
    ) -> PhononReference:
        """From supercell force constants of ``atoms`` (the primitive cell, as given):
        an array (n_sc, n_sc, 3, 3) or (n, n_sc, 3, 3) in eV/Å², or a phonopy
        ``FORCE_CONSTANTS``/``force_constants.hdf5`` file, computed on ``supercell``
        (3 ints or a 3×3 matrix). Masses are ``atoms.get_masses()``."""
        from phonopy import Phonopy
        from phonopy.file_IO import parse_FORCE_CONSTANTS, read_force_constants_hdf5

        _check_structure(atoms)
        matrix = resolve_supercell(atoms.cell[:], supercell)
        phonon = Phonopy(
            atoms_to_phonopy(atoms),
            supercell_matrix=matrix,
            primitive_matrix="P",
            symprec=symprec,
            log_level=0,
        )
        if isinstance(force_constants, str | os.PathLike):
            fc_path = Path(force_constants)
            if not fc_path.is_file():
                raise InputError(f"no such force-constants file: {fc_path}")
            if fc_path.suffix in (".hdf5", ".h5"):
                fc = read_force_constants_hdf5(fc_path)
            else:
                fc = parse_FORCE_CONSTANTS(fc_path)
        else:
            fc = np.asarray(force_constants, dtype=float)
        n_sc, n_p = len(phonon.supercell), len(phonon.primitive)
        if fc.shape not in ((n_sc, n_sc, 3, 3), (n_p, n_sc, 3, 3)) or not np.all(np.isfinite(fc)):
            raise InputError(
                f"force constants of shape {fc.shape} do not fit a supercell of {n_sc} atoms "
                f"(expected ({n_sc}, {n_sc}, 3, 3) or ({n_p}, {n_sc}, 3, 3), finite)"
            )
        phonon.force_constants = fc
        self = cls.from_phonopy(phonon, mesh=mesh, **kwargs)
        self._atoms = atoms.copy()
        self._atoms.calc = None
        self._check_primitive_order()
        return self

    # ------------------------------------------------------------------ properties

    @property
    def atoms(self) -> Atoms:
        """The cell whose ADPs are returned (a copy; no calculator)."""
        return self._atoms.copy()

    @property
    def phonopy(self):
        """The underlying ``phonopy.Phonopy`` object (with force constants)."""
        return self._phonon

    @property
    def force_constants(self) -> NDArray[np.float64]:
        """phonopy's supercell force constants in eV/Å²."""
        return np.asarray(self._phonon.force_constants)

    @property
    def supercell_matrix(self) -> NDArray[np.int64]:
        """(3, 3) integer supercell matrix of the force constants."""
        return self._supercell_matrix.copy()

    @property
    def n_force_calls(self) -> int:
        """Force calculations this object made (0 after a cache hit or from files)."""
        return self._n_force_calls

    @property
    def cache_file(self) -> Path | None:
        """The force-constant cache entry (None without ``cache_dir``)."""
        return self._cache_file

    @property
    def cache_hit(self) -> bool:
        """Whether the force constants were read from the cache."""
        return self._cache_hit

    def mesh_numbers(self, mesh: MeshSpec | None = None) -> NDArray[np.int64]:
        """The q-mesh (3,) used for ``mesh`` (default: the constructor's)."""
        return resolve_mesh(self._atoms.cell[:], self._mesh_spec if mesh is None else mesh)

    # ------------------------------------------------------------------ results

    def run(
        self, temperatures: float | Sequence[float] | ArrayLike, mesh: MeshSpec | None = None
    ) -> HarmonicADPs:
        """Eqn (2) on the q-mesh at the given temperatures (K); results are memoised."""
        mesh_numbers = self.mesh_numbers(mesh)
        temps = np.atleast_1d(np.asarray(temperatures, dtype=float))
        key = (tuple(mesh_numbers.tolist()), tuple(temps.tolist()))
        if key in self._results:
            return self._results[key]
        phonon = self._phonon
        phonon.init_mesh(
            mesh_numbers, is_mesh_symmetry=False, with_eigenvectors=True, use_iter_mesh=True
        )
        qpoints = np.asarray(phonon.mesh.qpoints)
        n3 = 3 * len(phonon.primitive)
        acc = HarmonicSum(
            phonon.primitive.masses,
            temps,
            freq_min=self._freq_min,
            imaginary_tol=self._imaginary_tol,
        )
        step = max(1, _MESH_CHUNK_BYTES // (16 * n3 * n3))
        starts = range(0, len(qpoints), step)
        for start in tqdm(
            starts, desc="q-mesh", disable=not self._progress or len(starts) < 4, leave=False
        ):
            phonon.run_qpoints(qpoints[start : start + step], with_eigenvectors=True)
            acc.add(phonon.qpoints.frequencies, phonon.qpoints.eigenvectors)
        with warnings.catch_warnings():
            if self._on_imaginary == "ignore":
                warnings.simplefilter("ignore", ImaginaryModesWarning)
            result = acc.result(raise_on_imaginary=self._on_imaginary == "raise")
        self._results[key] = result
        return result

    def _temperature(self, temperature: float | Sequence[float] | None) -> float | NDArray:
        if temperature is None:
            temperature = self._atoms.info.get("temperature")
            if temperature is None:
                raise InputError(
                    "no temperature: pass temperature=... (K) or set atoms.info['temperature']"
                )
        return temperature

    def adps(
        self,
        temperature: float | Sequence[float] | None = None,
        mesh: MeshSpec | None = None,
        extrapolate: bool = False,
    ) -> NDArray[np.float64]:
        """Cartesian U in Å²: (N, 3, 3) for one temperature (K), (T, N, 3, 3) for a sequence.

        ``extrapolate=True`` returns :meth:`run_extrapolated`'s infinite-mesh estimate instead
        of the mesh sum (which equals phonopy's and converges only as 1/n).
        """
        t = self._temperature(temperature)
        run = self.run_extrapolated if extrapolate else self.run
        u = run(t, mesh).u_cart
        return u[0] if np.ndim(t) == 0 else u

    def run_extrapolated(
        self, temperatures: float | Sequence[float] | ArrayLike, mesh: MeshSpec | None = None
    ) -> HarmonicADPs:
        """Eqn (2) extrapolated to an infinite q-mesh (Richardson, error ∝ 1/n).

        The mesh sum leaves out the Γ cell, whose acoustic modes (weight ∝ 1/q² at high T) carry
        a share of U proportional to the cell's size, 1/n with n = Q^(1/3). With the sum U_n on
        the mesh and U_m on a coarser odd mesh with about 2/3 of its divisions,
        U_∞ ≈ (n U_n − m U_m)/(n − m). For fcc Cu (EMT) the 9³/15³ pair gives U(300 K) within
        0.2 % of the converged value, where the 15³ sum alone is 6 % low. The counts of the
        returned result are those of the finer mesh.
        """
        fine_numbers = self.mesh_numbers(mesh)
        coarse_numbers = np.array([_odd_below(n) for n in fine_numbers])
        if np.array_equal(coarse_numbers, fine_numbers):
            raise InputError(
                f"mesh {fine_numbers.tolist()} is too coarse to extrapolate (>= 3 needed)"
            )
        fine = self.run(temperatures, fine_numbers)
        coarse = self.run(temperatures, coarse_numbers)
        n = float(np.prod(fine_numbers)) ** (1 / 3)
        m = float(np.prod(coarse_numbers)) ** (1 / 3)
        u = (n * fine.u_cart - m * coarse.u_cart) / (n - m)
        return dataclasses.replace(fine, u_cart=u)

    def u_cif(
        self, temperature: float | Sequence[float] | None = None, mesh: MeshSpec | None = None
    ) -> NDArray[np.float64]:
        """IUCr U^ij in Å² (``ase_cartnet.adp.u_cart_to_u_cif``), shapes as :meth:`adps`."""
        return u_cart_to_u_cif(self.adps(temperature, mesh), self._atoms.cell[:])

    def frequency_range(self, mesh: MeshSpec | None = None) -> tuple[float, float]:
        """(lowest, highest) phonon frequency on the mesh in THz (negative = imaginary)."""
        mesh_key = tuple(self.mesh_numbers(mesh).tolist())
        done = [r for (m, _), r in self._results.items() if m == mesh_key]
        result = done[0] if done else self.run(0.0, mesh)
        return result.min_frequency, result.max_frequency

    def to_atoms(self, temperature: float, mesh: MeshSpec | None = None) -> Atoms:
        """A copy of :attr:`atoms` with ``arrays["adps"]`` (N, 3, 3) Å² and
        ``info["temperature"]`` set, ready for ``ase_cartnet.io.cif.write_cif``."""
        atoms = self.atoms
        atoms.arrays["adps"] = self.adps(float(temperature), mesh)
        atoms.info["temperature"] = float(temperature)
        return atoms
