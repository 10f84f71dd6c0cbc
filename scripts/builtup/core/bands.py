"""The two kinds of raster a model reads: one acquisition (a scene), or a city's temporal stack.

A scene raster holds linear VH, VV and their mean, nodata 0 (:mod:`builtup.prepare.compose`);
a stack holds every acquisition of a city on the city's reference grid, VV and VH in dB per
acquisition, NaN where an acquisition has no data (:mod:`builtup.prepare.temporal`). Each
kind has its own recipes; a city's stack goes through the workflow as one more scene of
the city, named :data:`STACK`.
"""

from __future__ import annotations

SCENE = "scene"
STACK = "stack"  # the kind, and the scene name a city's temporal stack goes by
SCENE_BANDS = ("vh", "vv", "mean")
STACK_POLARISATIONS = ("vv", "vh")  # the bands of each acquisition in a stack, in dB
# What the tile tables report of a stack tile: statistics over all its acquisitions
STACK_SUMMARY = ("vv_mean", "vh_mean", "vv_std", "vh_std", "count")
BANDS = {SCENE: SCENE_BANDS, STACK: STACK_SUMMARY}


def kind_of(scene: str) -> str:
    """The kind of raster a scene name stands for."""
    return STACK if scene == STACK else SCENE


def stack_descriptions(scenes: list[str]) -> tuple[str, ...]:
    """The band descriptions of a stack of these acquisitions: ``<scene>:vv``, ``<scene>:vh``."""
    return tuple(f"{scene}:{pol}" for scene in scenes for pol in STACK_POLARISATIONS)


def stacked_scenes(descriptions) -> list[str] | None:
    """The acquisitions of a stack from its band descriptions; None for any other raster."""
    descriptions = tuple(d or "" for d in descriptions)
    scenes = [d.rpartition(":")[0] for d in descriptions[:: len(STACK_POLARISATIONS)]]
    if not scenes or stack_descriptions(scenes) != descriptions:
        return None
    return scenes


def raster_kind(descriptions) -> str:
    """The kind of an open raster, from its band descriptions."""
    return STACK if stacked_scenes(descriptions) is not None else SCENE
