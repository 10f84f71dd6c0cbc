import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from builtup.config.experiment import LossTerm
from builtup.core.scores import scores
from builtup.train.losses import (
    CrossEntropy,
    SoftmaxJaccard,
    WeightedSum,
    build_term,
)
from builtup.train.metrics import confusion_matrix
from builtup.train.optim import poly_factor


def term(settings: dict) -> LossTerm:
    """A loss term as an experiment's ``loss`` list gives it (weight 1 unless set)."""
    return LossTerm.from_dict({"weight": 1.0, **settings})


@pytest.fixture
def batch():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 4, 5)
    target = torch.randint(0, 2, (2, 4, 5))
    target[0, 0, :3] = 255
    return logits, target


def test_weighted_ce_by_hand(batch):
    logits, target = batch
    loss = CrossEntropy([0.1, 2.0])(logits, target)
    valid = target != 255
    log_p = F.log_softmax(logits, 1).permute(0, 2, 3, 1)[valid]
    t = target[valid]
    w = torch.tensor([0.1, 2.0])[t]
    expected = -(w * log_p[torch.arange(len(t)), t]).sum() / w.sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_softmax_jaccard_by_hand():
    logits = torch.log(torch.tensor([[[[0.8, 0.3]], [[0.2, 0.7]]]]))  # p(class 1) = 0.2, 0.7
    target = torch.tensor([[[1, 255]]])
    # pixel 2 ignored; class 0: p=0.8 t=0 -> I=0, U=0.8; class 1: p=0.2 t=1 -> I=0.2, U=1
    expected = 1 - ((0.0 + 0.2) / 2) / ((0.8 + 1.0) / 2)
    assert SoftmaxJaccard()(logits, target).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", ["dice", "lovasz", "tversky"])
def test_overlap_losses_of_a_perfect_prediction_are_zero(name):
    target = torch.tensor([[[0, 1], [1, 0]]])
    logits = F.one_hot(target, 2).permute(0, 3, 1, 2).float() * 50
    loss = build_term(term({"name": name}))
    assert loss(logits, target).item() == pytest.approx(0, abs=1e-5)
    assert loss(-logits, target).item() == pytest.approx(1, abs=1e-5)


def test_focal_down_weights_easy_pixels(batch):
    logits, target = batch
    focal = build_term(term({"name": "focal", "gamma": 2.0}))(logits, target)
    plain = build_term(term({"name": "focal", "gamma": 0.0}))(logits, target)
    assert 0 < focal < plain


@pytest.mark.parametrize("name", ["ce", "jaccard", "dice", "focal", "lovasz", "tversky"])
def test_ignored_pixels_do_not_count(batch, name):
    """smp's losses with ignore_index leave 255 out as our own losses did: neither the
    logits there nor the pixels themselves change the loss."""
    logits, target = batch
    loss = build_term(term({"name": name}))
    changed = logits.clone()
    changed[0, :, 0, :3] = torch.tensor([[9.0], [-9.0]])
    assert loss(logits, target).item() == pytest.approx(loss(changed, target).item(), rel=1e-6)
    kept = target[1:]  # the sample without ignored pixels, alone
    both = torch.cat([target[1:], torch.full_like(target[1:], 255)])
    doubled = torch.cat([logits[1:], torch.randn_like(logits[1:])])
    assert loss(doubled, both).item() == pytest.approx(loss(logits[1:], kept).item(), rel=1e-5)


def test_weighted_sum(batch):
    logits, target = batch
    total = WeightedSum([term(t) for t in [{"name": "ce"}, {"name": "jaccard", "weight": 2.0}]])(
        logits, target
    )
    assert total.item() == pytest.approx(
        CrossEntropy()(logits, target).item() + 2 * SoftmaxJaccard()(logits, target).item(),
        rel=1e-6,
    )
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        build_term(term({"name": "hinge"}))


def test_two_class_bce_and_dice_equal_the_2nd_place_loss_on_one_logit():
    """0.75 BCE + 0.25 Dice of tdyczek/unosat on one logit channel d, written with our 2-class
    logits (l0, l1): softmax(l)[1] = sigmoid(l1 - l0), so cross entropy is BCE of d and the
    Dice of class 1 is the Dice of sigmoid(d)."""
    torch.manual_seed(1)
    logits = torch.randn(3, 2, 8, 8)
    target = torch.randint(0, 2, (3, 8, 8))
    terms = [
        {"name": "ce", "weight": 0.75},
        {"name": "dice", "weight": 0.25, "classes": [1], "smooth": 0.001},
    ]
    ours = WeightedSum([term(t) for t in terms])(logits, target)
    d, t = (logits[:, 1] - logits[:, 0]).reshape(-1), target.reshape(-1).float()
    p = torch.sigmoid(d)
    dice = 1 - (2 * (p * t).sum() + 0.001) / (p.sum() + t.sum() + 0.001)
    theirs = 0.75 * F.binary_cross_entropy_with_logits(d, t) + 0.25 * dice
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


def test_confusion_matrix_ignores_255():
    pred = torch.tensor([0, 1, 1, 0, 1, 1])
    target = torch.tensor([0, 1, 0, 1, 255, 1])
    assert confusion_matrix(pred, target).tolist() == [[1, 1], [1, 2]]


def test_scores_of_a_known_matrix():
    s = scores(np.array([[50, 10], [5, 35]]))
    assert s["iou_1"] == pytest.approx(35 / 50)
    assert s["iou_0"] == pytest.approx(50 / 65)
    assert s["miou"] == pytest.approx((35 / 50 + 50 / 65) / 2)
    assert s["precision"] == pytest.approx(35 / 45)
    assert s["recall"] == pytest.approx(35 / 40)
    assert s["f1"] == pytest.approx(2 * 35 / (2 * 35 + 10 + 5))
    assert s["accuracy"] == pytest.approx(85 / 100)
    assert s["macro_f1"] == pytest.approx((2 * 35 / 85 + 2 * 50 / 115) / 2)


def test_scores_without_built_up_are_nan_not_error():
    s = scores(np.array([[10, 0], [0, 0]]))
    assert math.isnan(s["iou_1"]) and s["iou_0"] == 1.0


def test_poly_factor():
    assert poly_factor(0, 100, 0.9) == 1.0
    assert poly_factor(50, 100, 0.9) == pytest.approx(0.5**0.9)
    assert poly_factor(100, 100, 0.9) == 0.0
