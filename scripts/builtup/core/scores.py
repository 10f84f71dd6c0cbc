"""Segmentation scores from one confusion matrix (rows truth, columns prediction)."""

from __future__ import annotations

import numpy as np


def scores(matrix) -> dict[str, float]:
    """IoU per class, mIoU, F1 of class 1, macro F1, precision, recall (class 1), accuracy."""
    cm = np.asarray(matrix.cpu() if hasattr(matrix, "cpu") else matrix, dtype=np.float64)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    iou = _ratio(tp, tp + fp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    result = {f"iou_{c}": float(iou[c]) for c in range(len(tp))}
    result.update(
        miou=float(np.nanmean(iou)),
        f1=float(f1[1]),
        macro_f1=float(np.nanmean(f1)),
        precision=float(_ratio(tp[1], tp[1] + fp[1])),
        recall=float(_ratio(tp[1], tp[1] + fn[1])),
        accuracy=float(_ratio(tp.sum(), cm.sum())),
    )
    return result


def _ratio(num, den):
    """num / den with 0/0 = nan (a class absent from both truth and prediction)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
