"""Batches from the command line, the interactive view and the plausibility warnings."""

from __future__ import annotations

import csv
import json
import re
import shutil
import warnings

import numpy as np
import pytest
from ase.build import bulk

from ase_cartnet.cli import main
from ase_cartnet.data import L_ALANINE_CIF, MGAL2SI2_CIF
from ase_cartnet.io.cif import read_cif
from ase_cartnet.plausibility import check_reference_adps, implausible_u_eq_limit, is_molecular


def test_batch_goes_on_after_failures_and_writes_a_summary(tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(MGAL2SI2_CIF, inputs / "good.cif")
    (inputs / "broken.cif").write_text("not a cif\n")
    no_t = MGAL2SI2_CIF.read_text().replace("_diffrn_ambient_temperature", "_x_temperature")
    (inputs / "no_temperature.cif").write_text(no_t)
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["predict", str(inputs), str(L_ALANINE_CIF), "--out-dir", str(out), "--plot"])
    printed = capsys.readouterr().out
    assert code == 1
    assert "2 of 4 files predicted" in printed
    assert "broken.cif" in printed and "-T/--temperature" in printed
    rows = list(csv.DictReader((out / "summary.csv").open()))
    status = {row["file"].rsplit("/", 1)[-1]: row for row in rows}
    assert status["good.cif"]["status"] == "ok" and status["broken.cif"]["status"] == "failed"
    alanine = status["l_alanine_100K.cif"]
    assert alanine["status"] == "ok" and int(alanine["n_compared"]) == 6
    assert 0 < float(alanine["iou"]) <= 100 and float(alanine["u_eq_min"]) > 0
    assert {"good_cartnet.cif", "good_cartnet.png", "l_alanine_100K_cartnet.cif"} <= {
        p.name for p in out.iterdir()
    }
    assert read_cif(out / "l_alanine_100K_cartnet.cif").info["spacegroup"] == "P 21 21 21"


def test_several_inputs_need_an_output_folder(tmp_path, capsys):
    assert main(["predict", str(MGAL2SI2_CIF), str(L_ALANINE_CIF)]) == 2
    assert "--out-dir" in capsys.readouterr().err


def test_view_writes_one_self_contained_html_file(tmp_path):
    out = tmp_path / "view.html"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["view", str(L_ALANINE_CIF), "-o", str(out)]) == 0
    html = out.read_text()
    # nothing is fetched: no src/href to the network, the modules are data: URLs
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    imports = json.loads(re.search(r'<script type="importmap">(.*?)</script>', html).group(1))
    assert all(
        url.startswith("data:text/javascript;base64,") for url in imports["imports"].values()
    )
    data = json.loads(re.search(r'id="scene-data">(.*?)</script>', html, re.S).group(1))
    labelled = [a for a in data["atoms"] if a["label"]]
    assert sorted(a["label"] for a in labelled) == ["C1", "C2", "C6", "N5", "O3", "O4"]
    assert data["has_reference"] and all(a["iou"] is not None for a in labelled)
    assert len(data["bonds"]) == 12


@pytest.mark.slow
def test_view_renders_in_headless_chromium(tmp_path):
    """The page draws the ellipsoids with WebGL and no network (benchmarks/render_view.py)."""
    from ase_cartnet.viewer import find_chromium, screenshot

    if find_chromium() is None:
        pytest.skip("no chromium installed")
    html = tmp_path / "view.html"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main(["view", str(L_ALANINE_CIF), "-o", str(html)])
    png = screenshot(html, tmp_path / "view.png", size="800,600", timeout=120)
    from matplotlib.image import imread

    image = imread(png)[..., :3]
    red = (image[..., 0] > 0.8) & (image[..., 1] < 0.3) & (image[..., 2] < 0.3)
    assert red.sum() > 50  # the oxygen ellipsoids were drawn (WebGL ran)


def test_plausibility_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alanine = read_cif(L_ALANINE_CIF)
    assert is_molecular(alanine) and not is_molecular(bulk("NaCl", "rocksalt", a=5.64))
    assert implausible_u_eq_limit(23.0) == pytest.approx(0.1077, abs=1e-4)
    reference = alanine.arrays["adps"].copy()
    assert check_reference_adps(alanine, reference, 100.0) == []
    reference[0] = 0.25 * np.eye(3)  # C1 with U_eq 0.25 Å² at 23 K
    with pytest.warns(UserWarning, match=r"implausible at 23 K for C1 \(0.250\)"):
        assert check_reference_adps(alanine, reference, 23.0) == ["C1 (0.250)"]


def test_default_model_warns_on_a_molecular_crystal():
    from ase_cartnet.calculators.cartnet_adp import CartNetADP

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alanine = read_cif(L_ALANINE_CIF)
    with pytest.warns(UserWarning, match="molecular crystal .* outside the loaded model's domain"):
        CartNetADP().predict_many([alanine])


@pytest.mark.parametrize(
    "command, suffix, column",
    [("relax", "_prerelaxed.cif", "trusted"), ("denoise", "_denoised.cif", "volume_ratio")],
)
def test_relax_and_denoise_take_folders(tmp_path, capsys, command, suffix, column):
    import ase.io

    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(MGAL2SI2_CIF, inputs / "mgal2si2.cif")
    ase.io.write(inputs / "POSCAR_nacl", bulk("NaCl", "rocksalt", a=5.8), format="vasp")
    (inputs / "broken.cif").write_text("data_x\n")
    assert main([command, str(inputs)]) == 2  # a folder needs --out-dir
    assert "--out-dir" in capsys.readouterr().err
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main([command, str(inputs), "--out-dir", str(out), "--threads", "1"])
    printed = capsys.readouterr().out
    assert code == 1 and "2 of 3 files" in printed and "broken.cif" in printed
    rows = {r["file"].rsplit("/", 1)[-1]: r for r in csv.DictReader((out / "summary.csv").open())}
    assert rows["POSCAR_nacl"]["status"] == "ok" and rows["POSCAR_nacl"][column] != ""
    assert rows["broken.cif"]["status"] == "failed"
    written = sorted(p.name for p in out.iterdir() if p.name != "summary.csv")
    assert len(written) == 2 and all(name.endswith(suffix) for name in written)
