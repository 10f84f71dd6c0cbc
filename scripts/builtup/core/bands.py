"""The two kinds of raster a model reads: one acquisition (a scene), or a city's temporal stack.

A scene raster holds linear VH, VV and their mean, nodata 0 (:mod:`builtup.prepare.compose`);
a stack holds per-pixel statistics over a city's acquisitions in dB, NaN where none has data
(:mod:`builtup.prepare.temporal`). Each kind has its own recipes; a city's stack goes through
the workflow as one more scene of the city, named :data:`STACK`.
"""

from __future__ import annotations

SCENE = "scene"
STACK = "stack"  # the kind, and the scene name a city's temporal stack goes by
SCENE_BANDS = ("vh", "vv", "mean")
ORBITS = ("ASC", "DES")
STACK_BANDS = (
    *(f"{pol}_{stat}" for pol in ("vv", "vh") for stat in ("mean", "std", "min", "max")),
    *(f"{pol}_mean_{orbit.lower()}" for orbit in ORBITS for pol in ("vv", "vh")),
    "count",
)
BANDS = {SCENE: SCENE_BANDS, STACK: STACK_BANDS}


def kind_of(scene: str) -> str:
    """The kind of raster a scene name stands for."""
    return STACK if scene == STACK else SCENE


def raster_kind(descriptions) -> str:
    """The kind of an open raster, from its band descriptions."""
    return STACK if tuple(descriptions) == STACK_BANDS else SCENE
