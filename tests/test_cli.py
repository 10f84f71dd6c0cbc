"""The command line on bad arguments: one clear line, never a traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

BUILTUP = Path(sys.executable).with_name("builtup")


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["nope"],
        ["generate-demo"],
        ["generate-demo", "{tmp}/demo", "--size", "-5"],
        ["generate-demo", "{tmp}/demo", "--train", "9"],
        ["generate-demo", "{tmp}/demo", "--acquisitions", "0"],
        ["generate-demo", "{tmp}/file.txt/demo"],
        ["make-sheet"],
        ["make-sheet", "{tmp}/missing"],
        ["make-sheet", "{tmp}", "-o", "{tmp}/missing/sheet.tsv"],
        ["export-tile", "{tmp}/missing", "0", "{tmp}/t.tif"],
        ["export-tile", "{tmp}", "x", "{tmp}/t.tif"],
        ["export-tile", "{tmp}/corrupt", "0", "{tmp}/t.tif"],
        ["generate-demo", "{tmp}/demo", "--size", "99999999"],
        ["train", "{tmp}/missing.yaml", "--fold", "A"],
        ["train", str(REPO / "config/experiments/demo.yaml")],
        ["train", str(REPO / "config/experiments/demo.yaml"), "--fold", "A", "--results", "{tmp}"],
    ],
    ids=lambda args: " ".join(args)[:60] or "no command",
)
def test_bad_arguments_end_in_one_line(tmp_path, args):
    (tmp_path / "file.txt").write_text("not a folder")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt/tiles.json").write_text('{"windows": [[0, 0, 64, 64]], "tile_size": 64}')
    (tmp_path / "corrupt/images.npy").write_bytes(b"\x93NUMPY garbage")
    result = subprocess.run(
        [str(BUILTUP), *(a.format(tmp=tmp_path) for a in args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ERROR: "), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "t.tif").exists() and not (tmp_path / "demo").exists()
