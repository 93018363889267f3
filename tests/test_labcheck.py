"""The lab checks say what differs: wrong answers a student might write, and the message each gets."""
from __future__ import annotations

import copy

import pytest
import torch

from rethink import labcheck
from rethink.models import default_widths, get_model, scale_widths
from rethink.prune import criteria, select, surgery


def fails(fn, *args, **kw) -> str:
    with pytest.raises(AssertionError) as e:
        fn(*args, **kw)
    return str(e.value)


def test_right_answers_pass():
    labcheck.check_function(criteria.l1, criteria.l1, labcheck.random_filters())
    labcheck.check_indices([3, 1], torch.tensor([1, 3]))
    labcheck.check_number(243, 243, integer=True)


def test_a_stub_is_told_to_write_the_function():
    msg = fails(labcheck.check_function, lambda w: None, criteria.l1, labcheck.random_filters())
    assert "returned None: the function is not written yet" in msg and "(16, 8, 3, 3)" in msg


def test_wrong_scores_name_the_shape_or_the_filters():
    msg = fails(labcheck.check_function, lambda w: w.abs().flatten(1).sum(0), criteria.l1, labcheck.random_filters(),
                entry="filter")
    assert "has shape (72,), expected (16,) (one value per filter)" in msg
    msg = fails(labcheck.check_function, criteria.l2, criteria.l1, labcheck.random_filters(), entry="filter")
    assert "16 of 16 filters differ" in msg and "largest difference is at filter" in msg
    w = labcheck.random_filters()[0]
    off = criteria.l1(w).clone()
    off[5] += 1
    msg = fails(labcheck.check_tensor, off, criteria.l1(w), entry="filter")
    assert "1 of 16 filters differ (filters [5])" in msg


def test_wrong_indices_name_the_extra_and_missing_filters():
    msg = fails(labcheck.check_indices, [0, 1, 2], [0, 1, 5])
    assert "filters [2] should not be there and filters [5] are missing" in msg
    assert "has 2 filters, expected 3" in fails(labcheck.check_indices, [0, 1], [0, 1, 5])
    assert "wrong order" in fails(labcheck.check_indices, [1, 0], [0, 1], ordered=True)


def test_an_exception_in_the_student_function_is_the_message():
    msg = fails(labcheck.check_function, lambda w: w.foo(), criteria.l1, labcheck.random_filters())
    assert "raised AttributeError" in msg


def test_numbers_say_by_how_much():
    assert "is 242, expected 243 (off by -1, 0.9959 times it)" in fails(labcheck.check_number, 242, 243, integer=True)
    assert "must be an int" in fails(labcheck.check_number, 243.0, 243, integer=True)
    assert "off by" in fails(labcheck.check_number, 1.5, 1.0, what="ratio")


def _small():
    return labcheck.with_random_bn(get_model("vgg11", 10, scale_widths(default_widths("vgg11"), 0.25), 1))


def test_surgery_that_forgets_the_batchnorm_is_named():
    def forgets_bn(conv, bn, nxt, keep):
        conv, nxt = copy.deepcopy((conv, nxt))
        conv.weight.data = conv.weight.data[keep]
        nxt.weight.data = nxt.weight.data[:, keep]
        return conv, bn, nxt
    msg = fails(labcheck.check_conv_surgery, forgets_bn, _small(), 3, [0, 2, 5])
    assert "the BatchNorm" in msg and "shape (64,)" in msg and "(3,)" in msg


def test_a_model_with_other_filters_kept_names_the_tensor():
    model = _small()
    keep = torch.tensor([0, 1, 2, 3])
    x = torch.randn(2, 1, 32, 32)
    labcheck.check_same_outputs(surgery.prune_filters(model, {2: keep}), surgery.prune_filters(model, {2: keep}), x)
    msg = fails(labcheck.check_same_outputs, surgery.prune_filters(model, {2: torch.tensor([0, 1, 2, 4])}),
                surgery.prune_filters(model, {2: keep}), x)
    assert "features.4.weight differs in rows (output channels) [3]" in msg


def test_keep_top_reference_agrees_with_n_keep():
    ref = lambda s, p: select.keep_top(s, select.n_keep(len(s), p)[0])  # noqa: E731 (the lab's reference)
    assert len(ref(torch.rand(64), 0.1)) == 57
