"""Malformed config files, scenes sheets and YAML: one InputError line naming the file."""

import re

import pytest
import yaml

from builtup.config.sheet import check_inputs_exist, read_sheet
from builtup.config.workflow import check_config, check_config_files
from builtup.config.yamlfile import read_yaml
from builtup.core.errors import InputError

from conftest import REPO

HEADER = "city\tscene\tvv\tvh\tsplit\n"
ROW = "A_a\t1_DES\ta.tif\tb.tif\ttrain\n"


def refused(call, path, message):
    with pytest.raises(InputError, match=re.escape(message)) as err:
        call(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            HEADER + ROW.replace("\n", "\textra\n"),
            "line 2: 6 tab-separated fields, the header has 5",
        ),
        (HEADER + "# a comment\n" + ROW.replace("train", "banana"), "line 2: 1 tab-separated"),
        (HEADER + ROW + ROW.replace("train", "rain"), "line 3: split: 'rain' is not one of"),
        (
            (HEADER + ROW).encode("latin-1")
            + "A_a\t2_ASC\té.tif\tb.tif\ttrain\n".encode("latin-1"),
            "scenes sheet is not UTF-8 text (line 3)",
        ),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00", "scenes sheet is a binary file, not text"),
        ("", "scenes sheet is empty: it needs a header (city, scene, vv, vh, split)"),
        (
            HEADER + ROW + "A_a\t2_ASC\tc.tif\td.tif\ttest\n",
            "line 3: city A_a has both train and test rows",
        ),
    ],
    ids=["extra field", "comment line", "line number", "latin-1", "binary", "empty", "split"],
)
def test_a_malformed_sheet_is_refused_in_one_line(tmp_path, content, message):
    path = tmp_path / "scenes.tsv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    refused(read_sheet, path, message)


def test_a_hash_in_a_sheet_path_is_part_of_the_path(tmp_path):
    path = tmp_path / "scenes.tsv"
    path.write_text(HEADER + "A_a\t1_DES\t/data/run#2/vv.tif\t/data/run#2/vh.tif\ttrain\n")
    sheet = read_sheet(path)
    assert list(sheet["vv"]) == ["/data/run#2/vv.tif"] and list(sheet.index) == [2]


def test_missing_raw_scenes_and_labels_are_named_with_their_line(tmp_path):
    (tmp_path / "a.tif").touch()
    path = tmp_path / "scenes.tsv"
    path.write_text(HEADER + ROW.replace("a.tif", str(tmp_path / "a.tif")))
    sheet = read_sheet(path)
    with pytest.raises(InputError, match=r"scenes.tsv: line 2: vh file b.tif does not exist"):
        check_inputs_exist(sheet, {}, None, path, "config.yaml")
    sheet.loc[2, "vh"] = str(tmp_path / "b.tif")
    with pytest.raises(InputError, match=r"line 2: vh file .*b.tif does not exist"):
        check_inputs_exist(sheet, {}, None, path, "config.yaml")
    check_inputs_exist(sheet, {}, tmp_path.parent, path, "config.yaml")  # the demo makes them
    sheet.loc[2, "vh"] = str(tmp_path / "a.tif")
    labels = {"A_a": "labels/A.shp"}
    with pytest.raises(InputError, match="config.yaml: labels.A_a: file labels/A.shp does not"):
        check_inputs_exist(sheet, labels, None, path, "config.yaml")


def config_with(**changes) -> dict:
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    for key, value in changes.items():
        section, name = key.split("__")
        config[section][name] = value
    return config


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"prediction__overlap": 512}, "prediction.overlap (512 px) must be less than prediction"),
        ({"prediction__overlap": 600}, "prediction.overlap (600 px) must be less than"),
        ({"tiles__min_overlap": 512}, "tiles.min_overlap (512 px) must be less than tiles.size"),
        ({"prediction__device": "banana"}, "prediction.device: 'banana' does not match"),
    ],
)
def test_config_relations_are_checked(changes, message):
    refused(lambda source: check_config(config_with(**changes), source), "config.yaml", message)


def test_the_shipped_config_passes():
    check_config(config_with(), "config.yaml")
    check_config(config_with(prediction__device="cuda:1"), "config.yaml")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "cities: [a]\ntiles: {size: 64}\ncities: [b]\n",
            "line 3: key 'cities' given twice (lines 1 and 3)",
        ),
        ("tiles:\n  size: 64\n  size: 128\n", "key 'size' given twice (lines 2 and 3)"),
        (
            "cities: !!python/object/apply:os.system [ls]\n",
            "line 1: could not determine a constructor",
        ),
        ("cities: [a\n", "is not valid YAML: line 2"),
    ],
    ids=["top-level key twice", "nested key twice", "python tag", "syntax"],
)
def test_yaml_files_are_read_strictly(tmp_path, content, message):
    path = tmp_path / "file.yaml"
    path.write_text(content)
    refused(lambda p: read_yaml(p, "config file"), path, message)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "a config file is a mapping of settings"),
        ("- a\n- b\n", "a config file is a mapping of settings"),
        (b"\x00\x01binary", "config file is a binary file, not text"),
    ],
    ids=["empty", "list", "binary"],
)
def test_a_config_file_that_is_no_mapping_is_refused(tmp_path, content, message):
    path = tmp_path / "config.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    refused(lambda p: check_config_files([p]), path, message)
    check_config_files([tmp_path / "absent.yaml"])  # Snakemake reports a missing one
