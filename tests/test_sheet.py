import shutil

import pandas as pd
import pytest

from builtup.errors import InputError
from builtup.sheet import check_cities, read_sheet, scan_unosat

from conftest import REPO


def test_scan_pairs_polarisations_and_names_scenes(tiny_demo):
    sheet = scan_unosat(tiny_demo, relative_to=tiny_demo.parent.parent)
    assert list(sheet.columns) == ["city", "scene", "vv", "vh", "split"]
    assert len(sheet) == 12
    assert not sheet["vv"].str.contains("BorderMask").any()
    assert (sheet["vv"].str.contains("_vv_") & sheet["vh"].str.contains("_vh_")).all()
    assert set(sheet.loc[sheet.split == "train", "city"]) == {
        "38SLF_Mosul",
        "38SNE_Souleimaniye",
        "38SMA_Najaf",
        "38RPV_Nasiryah",
    }
    tikrit = sheet[sheet.city == "38SLD_Tikrit"]["scene"].tolist()
    assert tikrit == ["20150207_DES", "20150207_DES_1"]
    assert sheet["scene"].str.fullmatch(r"\d{8}_(ASC|DES)(_\d)?").all()


def test_committed_demo_sheet_matches_the_generator(tiny_demo):
    """config/scenes.tsv is what make-sheet writes for the generated demo."""
    regenerated = scan_unosat(tiny_demo, relative_to=tiny_demo.parent.parent)
    committed = read_sheet(REPO / "config" / "scenes.tsv")
    pd.testing.assert_frame_equal(regenerated.reset_index(drop=True), committed)


def test_missing_polarisation_is_named(tiny_demo, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(tiny_demo / "Mosul_2015", copy / "Mosul_2015")
    victim = next(copy.rglob("*_vh_ASC_*.tif"))
    victim.unlink()
    with pytest.raises(InputError, match="VH file of this acquisition is missing") as err:
        scan_unosat(copy)
    assert "_vv_ASC_" in str(err.value)


def test_empty_folder_and_missing_folder(tmp_path):
    with pytest.raises(InputError, match="no Sentinel-1 scene"):
        scan_unosat(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        scan_unosat(tmp_path / "nope")


def test_sheet_checks(tmp_path):
    path = tmp_path / "s.tsv"
    path.write_text(
        "city\tscene\tvv\tvh\tsplit\nA_B\t1_DES\ta\tb\ttrain\nA_B\t1_DES\tc\td\ttrain\n"
    )
    with pytest.raises(InputError, match="listed twice"):
        read_sheet(path)
    path.write_text("city\tscene\tvv\nA_B\t1\ta\n")
    with pytest.raises(InputError, match="lacks column"):
        read_sheet(path)
    sheet = pd.DataFrame([{"city": "A_B", "scene": "1", "vv": "a", "vh": "b", "split": "train"}])
    with pytest.raises(InputError, match="city C_D is in the config but has no scene"):
        check_cities(sheet, ["A_B", "C_D"], {"A_B": "x.shp"}, path)
    with pytest.raises(InputError, match="training city A_B has no label"):
        check_cities(sheet, ["A_B"], {}, path)


def test_make_sheet_command(tiny_demo, tmp_path, capsys):
    from builtup.cli import main

    base = tiny_demo.parent.parent
    assert main(["make-sheet", str(tiny_demo), "--relative-to", str(base)]) == 0
    printed = capsys.readouterr().out
    assert printed == (REPO / "config" / "scenes.tsv").read_text()
    assert main(["make-sheet", str(tmp_path / "missing")]) == 1
    assert "ERROR: " in capsys.readouterr().err
