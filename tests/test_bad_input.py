"""Bad input gets a ValueError (or subclass) naming the problem — a table of cases."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from cif_text import cif_block

from ase_cartnet.benchmarking.models import small_checkpoint
from ase_cartnet.calculators.cartnet_adp import CartNetADP
from ase_cartnet.errors import CheckpointError, CIFError, InputError
from ase_cartnet.io.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return small_checkpoint(tmp_path_factory.mktemp("ckpt"))


def _predict(checkpoint, atoms, temperature=300.0, **kwargs):
    return CartNetADP(checkpoint=checkpoint, temperature=temperature, **kwargs).get_property(
        "adps", atoms
    )


def _nacl(**changes):
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    for key, value in changes.items():
        setattr(atoms, key, value)
    return atoms


def _nan_positions():
    atoms = _nacl()
    atoms.positions[1, 2] = np.nan
    return atoms


def _overlapping():
    atoms = _nacl()
    atoms.positions[1] = atoms.positions[0]
    return atoms


def _unknown_element():
    atoms = _nacl()
    atoms.numbers[0] = 0  # 'X', a dummy atom
    return atoms


def _other_architecture(tmp: Path) -> Path:
    path = tmp / "other.ckpt"
    torch.save({"model_state": torch.nn.Linear(3, 4).state_dict()}, path)
    return path


def _other_model_kind(tmp: Path) -> Path:
    return save_checkpoint(
        tmp / "deeprelax.pt", torch.nn.Linear(3, 4), model_name="deeprelax", config={}
    )


def _wrong_width(tmp: Path, checkpoint: Path) -> Path:
    payload = torch.load(checkpoint, weights_only=True)
    payload["model_state"]["head.MLP.0.weight"] = torch.zeros(8, 8)
    path = tmp / "wrongwidth.pt"
    torch.save(payload, path)
    return path


def _truncated(tmp: Path, checkpoint: Path) -> Path:
    data = checkpoint.read_bytes()
    path = tmp / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    return path


def _pickled_object(tmp: Path) -> Path:
    path = tmp / "code.pt"
    torch.save({"model_state": {}, "payload": zipfile.ZipInfo("x")}, path)  # any non-tensor class
    return path


def _text_file(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


CIF_WITHOUT_ADPS = cif_block(
    "x", (4.0, 4.0, 4.0, 90, 90, 90), ["Na1 Na 0 0 0", "Cl1 Cl 0.5 0.5 0.5"]
)


def cases(tmp: Path, ckpt: Path):
    """(id, callable, expected exception type, regex on the message)."""
    from ase_cartnet.io.cif import read_cif

    return [
        ("empty_atoms", lambda: _predict(ckpt, Atoms()), InputError, "empty"),
        (
            "zero_volume_cell",
            lambda: _predict(ckpt, _nacl(cell=np.zeros((3, 3)))),
            InputError,
            "zero volume",
        ),
        (
            "flat_cell",
            lambda: _predict(ckpt, _nacl(cell=[[4, 0, 0], [0, 4, 0], [4, 4, 0]])),
            InputError,
            "zero volume",
        ),
        (
            "nan_positions",
            lambda: _predict(ckpt, _nan_positions()),
            InputError,
            "non-finite positions",
        ),
        ("overlapping_atoms", lambda: _predict(ckpt, _overlapping()), InputError, "overlap"),
        (
            "unknown_element",
            lambda: _predict(ckpt, _unknown_element()),
            InputError,
            "unknown element",
        ),
        ("not_atoms", lambda: _predict(ckpt, "NaCl"), InputError, "ase.Atoms"),
        (
            "temperature_missing",
            lambda: _predict(ckpt, _nacl(), temperature=None),
            InputError,
            "no temperature",
        ),
        ("temperature_zero", lambda: _predict(ckpt, _nacl(), temperature=0.0), InputError, "> 0 K"),
        (
            "temperature_negative",
            lambda: _predict(ckpt, _nacl(), temperature=-5.0),
            InputError,
            "> 0 K",
        ),
        (
            "temperature_nan",
            lambda: _predict(ckpt, _nacl(), temperature=float("nan")),
            InputError,
            "> 0 K",
        ),
        (
            "temperature_text",
            lambda: _predict(ckpt, _nacl(), temperature="hot"),
            InputError,
            "not a number",
        ),
        (
            "other_architecture",
            lambda: CartNetADP(checkpoint=_other_architecture(tmp)),
            CheckpointError,
            r"does not match(.|\n)*missing keys(.|\n)*encoder\.embedding\.weight"
            r"(.|\n)*unexpected keys(.|\n)*weight",
        ),
        (
            "other_model_kind",
            lambda: CartNetADP(checkpoint=_other_model_kind(tmp)),
            CheckpointError,
            "'deeprelax'",
        ),
        (
            "wrong_layer_width",
            lambda: CartNetADP(checkpoint=_wrong_width(tmp, ckpt)),
            CheckpointError,
            r"shape keys \(1\): head\.MLP\.0\.weight",
        ),
        (
            "truncated_checkpoint",
            lambda: CartNetADP(checkpoint=_truncated(tmp, ckpt)),
            CheckpointError,
            "truncated",
        ),
        (
            "checkpoint_with_objects",
            lambda: CartNetADP(checkpoint=_pickled_object(tmp)),
            CheckpointError,
            "weights_only",
        ),
        (
            "checkpoint_missing",
            lambda: CartNetADP(checkpoint=tmp / "nope.pt"),
            CheckpointError,
            "not found",
        ),
        (
            "checkpoint_is_text",
            lambda: CartNetADP(checkpoint=_text_file(tmp, "t.pt", "hello")),
            CheckpointError,
            "checkpoint",
        ),
        (
            "non_cif_file",
            lambda: read_cif(_text_file(tmp, "x.cif", "this is not a CIF\n{}")),
            CIFError,
            "CIF",
        ),
        (
            "cif_without_adps",
            lambda: read_cif(_text_file(tmp, "noadp.cif", CIF_WITHOUT_ADPS), require_adps=True),
            CIFError,
            "ADP",
        ),
        (
            "bad_hydrogen_policy",
            lambda: CartNetADP(checkpoint=ckpt, hydrogen="ignore"),
            InputError,
            "hydrogen",
        ),
        (
            "bad_rotations",
            lambda: CartNetADP(checkpoint=ckpt, rotations=0),
            InputError,
            "rotations",
        ),
        (
            "u_cif_of_molecule",
            lambda: CartNetADP(checkpoint=ckpt, temperature=100.0).get_property(
                "u_cif", Atoms("CO", positions=[[0, 0, 0], [0, 0, 1.13]])
            ),
            InputError,
            "periodic",
        ),
    ]


CASE_IDS = [c[0] for c in cases(Path("."), Path("."))]


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_bad_input_is_a_clear_value_error(case_id, checkpoint, tmp_path):
    table = {c[0]: c[1:] for c in cases(tmp_path, checkpoint)}
    action, error, pattern = table[case_id]
    with pytest.raises(error, match=pattern) as info:
        action()
    assert isinstance(info.value, ValueError)


def test_table_has_at_least_twelve_cases():
    assert len(CASE_IDS) >= 12
    assert len(set(CASE_IDS)) == len(CASE_IDS)


def test_checkpoint_error_names_mismatched_keys_without_torch_traceback(tmp_path):
    path = _other_architecture(tmp_path)
    with pytest.raises(CheckpointError) as info:
        CartNetADP(checkpoint=path)
    assert "RuntimeError" not in str(info.value)
