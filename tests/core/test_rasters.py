import os
from types import SimpleNamespace

import pytest
from affine import Affine

from builtup.core.rasters import atomic_path, same_grid

NORTHING = 3_700_000.0


def grid(x0=400_000.0, y0=NORTHING, size=10.0):
    return SimpleNamespace(
        width=300, height=200, crs="EPSG:32638", transform=Affine(size, 0, x0, 0, -size, y0)
    )


@pytest.mark.parametrize(
    "other, same",
    [
        (grid(), True),
        (grid(y0=NORTHING + 0.05), True),  # 0.005 px
        (grid(x0=400_000.05), True),
        (grid(size=10.0 * (1 + 1e-9)), True),
        (grid(y0=NORTHING + 3.6), False),  # 0.36 px: a relative 1e-6 on the northing hid it
        (grid(x0=400_000.5), False),  # 0.05 px
        (grid(size=10.0 * (1 + 1e-4)), False),
    ],
)
def test_grids_are_compared_in_pixel_units_at_utm_northings(other, same):
    assert same_grid(grid(), other) is same
    assert same_grid(other, grid()) is same


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_get_the_permissions_of_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        with atomic_path(tmp_path / "out.json") as tmp:
            tmp.write_text("{}")
    finally:
        os.umask(previous)
    assert (tmp_path / "out.json").stat().st_mode & 0o777 == 0o666 & ~umask
