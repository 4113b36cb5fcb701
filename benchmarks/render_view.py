"""Render the README figures: the ORTEP PNG and a headless-Chromium screenshot of the HTML view.

    python benchmarks/render_view.py [--out docs]

Writes ``ortep_l_alanine.png`` (prediction beside the file's ADPs), ``view_l_alanine.html`` and
its screenshot ``view_l_alanine.png``, and ``ortep_alpo4.png`` (an inorganic network, AlPO4 at
593 K from ../shared when present, else MgAl2Si2). Chromium runs with no network
(``--disable-background-networking``, a fresh profile); the page loads nothing from outside.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from ase_cartnet.calculators.cartnet_adp import CartNetADP
from ase_cartnet.data import L_ALANINE_CIF, MGAL2SI2_CIF
from ase_cartnet.io.cif import read_cif
from ase_cartnet.plot import plot_ellipsoids
from ase_cartnet.viewer import find_chromium, screenshot, write_view

ALPO4 = (
    Path(__file__).resolve().parents[2]
    / "shared/data/exp_adp_dev/cdvae_xrd/br1322Isup2.rtv.combined__I.cif"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    calc = CartNetADP()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alanine = read_cif(L_ALANINE_CIF)
        u = calc.predict_many([alanine])[0]
        inorganic = read_cif(ALPO4 if ALPO4.is_file() else MGAL2SI2_CIF)
        if "temperature" not in inorganic.info:
            inorganic.info["temperature"] = 300.0
        u_inorganic = calc.predict_many([inorganic])[0]
    reference = alanine.arrays["adps"]
    print(plot_ellipsoids(out / "ortep_l_alanine.png", alanine, u, reference=reference, dpi=80))
    ref_inorganic = inorganic.arrays["adps"]
    print(
        plot_ellipsoids(
            out / "ortep_alpo4.png",
            inorganic,
            u_inorganic,
            reference=ref_inorganic if ALPO4.is_file() else None,
            dpi=80,
        )
    )
    if find_chromium() is None:  # the ORTEP figures need no browser; the screenshot does
        print("no chromium (apt-get install -y chromium): view_l_alanine.png not rebuilt")
        return
    html = write_view(out / "view_l_alanine.html", alanine, u, reference)
    screenshot(html, out / "view_l_alanine.png")
    html.unlink()  # 1 MB of embedded three.js: rebuilt by the command, not committed
    print(out / "view_l_alanine.png")


if __name__ == "__main__":
    main()
