"""Small CIF texts for the tests: one data block with a cell and one atom-site loop."""

from __future__ import annotations

from collections.abc import Sequence

SITE_COLUMNS = ("label", "type_symbol", "fract_x", "fract_y", "fract_z")
"""The first columns of every atom-site loop (``_atom_site_`` items)."""


def cif_block(
    name: str,
    cellpar: Sequence[object],
    rows: Sequence[str],
    *,
    space_group: str = "P 1",
    items: Sequence[str] = (),
    columns: Sequence[str] = (),
) -> str:
    """CIF text of block ``data_<name>``: cell (a, b, c in Å, angles in °), the H-M symbol,
    further ``items`` lines, and a loop of ``SITE_COLUMNS + columns`` with one line per row."""
    cell = [
        f"_cell_{kind}_{axis} {value}"
        for kind, axis, value in zip(
            ("length",) * 3 + ("angle",) * 3,
            ("a", "b", "c", "alpha", "beta", "gamma"),
            cellpar,
            strict=True,
        )
    ]
    loop = ["loop_", *(f"_atom_site_{c}" for c in (*SITE_COLUMNS, *columns))]
    head = [f"data_{name}", *cell, f"_symmetry_space_group_name_H-M '{space_group}'", *items]
    return "\n".join([*head, *loop, *rows]) + "\n"
