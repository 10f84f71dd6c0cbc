"""Class codes of masks and label rasters, shared by every stage."""

BACKGROUND, BUILTUP, IGNORE = 0, 1, 255  # IGNORE: no data, left out of losses and metrics
