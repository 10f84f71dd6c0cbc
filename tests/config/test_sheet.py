import shutil
from pathlib import Path

import pandas as pd
import pytest

from builtup.config.sheet import check_cities, read_sheet, scan_unosat
from builtup.core.errors import InputError

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
    pd.testing.assert_frame_equal(regenerated, committed.reset_index(drop=True))


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
    path.write_text("city\tscene\tvv\tvh\tsplit\nA_B\tstack\ta\tb\ttrain\n")
    with pytest.raises(InputError, match="'stack' is reserved for the city's temporal stack"):
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


def test_make_sheet_as_the_readme_types_it_with_data_outside_the_working_directory(
    tiny_demo, tmp_path, monkeypatch
):
    """`builtup make-sheet /data/unosat -o config/scenes.tsv` from the repository."""
    from builtup.cli import main

    work = tmp_path / "repo"
    (work / "config").mkdir(parents=True)
    monkeypatch.chdir(work)
    assert main(["make-sheet", str(tiny_demo), "-o", "config/scenes.tsv"]) == 0
    sheet = read_sheet(work / "config/scenes.tsv")
    assert len(sheet) == 12
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in [*sheet.vv, *sheet.vh])


def test_make_sheet_paths_under_the_working_directory_stay_relative(tiny_demo, monkeypatch):
    monkeypatch.chdir(tiny_demo.parent.parent)
    sheet = scan_unosat(tiny_demo)
    assert sheet["vv"].str.startswith("resources/demo/").all()


def test_make_sheet_dash_writes_to_standard_output(tiny_demo, tmp_path, monkeypatch, capsys):
    from builtup.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["make-sheet", str(tiny_demo), "-o", "-"]) == 0
    assert capsys.readouterr().out.startswith("city\tscene\tvv\tvh\tsplit\n")
    assert not (tmp_path / "-").exists()


def test_same_file_names_in_two_folders_are_two_acquisitions(tiny_demo, tmp_path):
    """Real data has <date>_<tile> and <date>_<tile>_1 folders holding files of one name."""
    city = tmp_path / "data" / "Tikrit_2015"
    shutil.copytree(tiny_demo / "Tikrit_2015", city)
    folder = next(p.parent for p in city.rglob("*_vv_*.tif"))
    twin = folder.with_name(folder.name + "_1")
    twin.mkdir()
    for path in folder.glob("*.tif"):
        shutil.copy(path, twin / path.name)
    tikrit = scan_unosat(tiny_demo).query("city == '38SLD_Tikrit'")
    sheet = scan_unosat(tmp_path / "data")
    assert len(sheet) == len(tikrit) + len(list(folder.glob("*_vv_*.tif")))
    assert sheet["vv"].is_unique and sheet["scene"].is_unique
    assert sheet["scene"].str.fullmatch(r"\d{8}_(ASC|DES)(_\d)?").all()
