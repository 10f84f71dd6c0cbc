"""Training augmentation from the experiment's YAML list, built with albumentations.

Each entry is ``{name: <albumentations class>, <its arguments>}``; ``OneOf``
and ``SomeOf`` take a ``transforms`` list of entries. Mask pixels that a
geometric transform creates (borders, dropped holes) should be 255 (ignored):
set ``fill_mask: 255`` on such transforms, as the shipped experiments do.
"""

from __future__ import annotations

import albumentations as A


def build_transform(entry: dict) -> A.BasicTransform:
    # YAML has no tuples: every list argument (sizes, ranges, limits) becomes one
    options = {
        key: tuple(value) if isinstance(value, list) else value
        for key, value in entry.items()
        if key not in ("name", "transforms")
    }
    cls = getattr(A, entry["name"])
    if "transforms" in entry:
        return cls([build_transform(t) for t in entry["transforms"]], **options)
    return cls(**options)


def build_augmentation(entries: list[dict]) -> A.Compose | None:
    """A Compose of the entries, or None when the list is empty."""
    if not entries:
        return None
    return A.Compose([build_transform(e) for e in entries])
