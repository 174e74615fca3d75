"""HR@k and NDCG@k for one relevant item: ranks are 1-based, 0 means the target is not in the list."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rec_gym.metrics import DEFAULT_KS, hit_at_k, ndcg_at_k, ranking_report


@pytest.mark.parametrize(
    "rank, hit",
    [(0, 0.0), (1, 1.0), (2, 1.0), (10, 1.0), (11, 0.0)],
)
def test_hit_at_10_counts_ranks_1_to_10_and_not_absent_or_11(rank, hit):
    assert hit_at_k(rank, k=10) == hit


@pytest.mark.parametrize(
    "rank, ndcg",
    [
        (0, 0.0),
        (1, 1.0),
        (2, 1 / math.log2(3)),
        (10, 1 / math.log2(11)),
        (11, 0.0),
    ],
)
def test_ndcg_at_10_is_one_over_log2_of_rank_plus_one_inside_the_top_10(rank, ndcg):
    assert ndcg_at_k(rank, k=10) == pytest.approx(ndcg, abs=1e-12)


def test_ndcg_of_rank_2_is_0_6309():
    assert ndcg_at_k(2) == pytest.approx(0.6309297535714575)


def test_k_is_inclusive_cut_off():
    assert hit_at_k(5, k=5) == 1.0
    assert hit_at_k(6, k=5) == 0.0
    assert ndcg_at_k(5, k=5) == pytest.approx(1 / math.log2(6))
    assert ndcg_at_k(6, k=5) == 0.0
    assert hit_at_k(1, k=1) == 1.0 and hit_at_k(2, k=1) == 0.0


def test_default_k_is_10():
    assert hit_at_k(10) == 1.0 and hit_at_k(11) == 0.0
    assert ndcg_at_k(10) > 0.0 and ndcg_at_k(11) == 0.0


def test_scalar_in_gives_python_float_out():
    assert type(hit_at_k(3)) is float
    assert type(ndcg_at_k(np.int64(3))) is float


def test_array_in_gives_elementwise_array_out():
    ranks = np.array([0, 1, 2, 10, 11])
    np.testing.assert_array_equal(hit_at_k(ranks), [0.0, 1.0, 1.0, 1.0, 0.0])
    np.testing.assert_allclose(
        ndcg_at_k(ranks), [0.0, 1.0, 1 / math.log2(3), 1 / math.log2(11), 0.0], atol=1e-12
    )


def test_list_and_2d_inputs_keep_their_shape():
    assert hit_at_k([[1, 6], [0, 3]], k=5).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert ndcg_at_k([1, 2], k=1).tolist() == [1.0, 0.0]


def test_whole_number_floats_are_ranks():
    assert hit_at_k(2.0, k=2) == 1.0
    np.testing.assert_allclose(ndcg_at_k(np.array([2.0, 0.0])), [1 / math.log2(3), 0.0])


def test_ranking_report_has_hr_then_ndcg_for_each_default_k():
    report = ranking_report([1, 2, 3])
    assert list(report) == ["HR@1", "HR@5", "HR@10", "NDCG@1", "NDCG@5", "NDCG@10"]
    assert DEFAULT_KS == (1, 5, 10)
    assert all(type(v) is float for v in report.values())


def test_ranking_report_means_over_sessions_by_hand():
    # Four sessions: target at rank 1, at rank 3, at rank 7, and absent.
    report = ranking_report([1, 3, 7, 0], ks=(1, 5, 10))
    assert report["HR@1"] == pytest.approx(1 / 4)
    assert report["HR@5"] == pytest.approx(2 / 4)
    assert report["HR@10"] == pytest.approx(3 / 4)
    assert report["NDCG@1"] == pytest.approx(1 / 4)
    assert report["NDCG@5"] == pytest.approx((1 + 1 / math.log2(4)) / 4)  # (1 + 0.5) / 4
    assert report["NDCG@10"] == pytest.approx((1 + 0.5 + 1 / math.log2(8)) / 4)  # (1 + 1/2 + 1/3) / 4


def test_ranking_report_custom_ks_and_a_single_scalar_rank():
    assert ranking_report(2, ks=(2,)) == {"HR@2": 1.0, "NDCG@2": pytest.approx(1 / math.log2(3))}


def test_ranking_report_of_no_sessions_is_an_error():
    with pytest.raises(ValueError, match="at least one rank"):
        ranking_report([])


@pytest.mark.parametrize("metric", [hit_at_k, ndcg_at_k, ranking_report])
@pytest.mark.parametrize("bad", [-1, [1, -2], np.array([3, -1])])
def test_negative_ranks_are_rejected(metric, bad):
    with pytest.raises(ValueError, match=">= 0"):
        metric(bad)


@pytest.mark.parametrize("metric", [hit_at_k, ndcg_at_k, ranking_report])
@pytest.mark.parametrize("bad", [1.5, [1, 2.5], float("nan"), float("inf")])
def test_fractional_and_non_finite_ranks_are_rejected(metric, bad):
    with pytest.raises(ValueError, match="whole numbers"):
        metric(bad)


@pytest.mark.parametrize("metric", [hit_at_k, ndcg_at_k, ranking_report])
@pytest.mark.parametrize("bad", [True, np.array([True, False]), "3", None])
def test_booleans_strings_and_none_are_not_ranks(metric, bad):
    # A boolean array is a hit mask; reading True as rank 1 would turn every hit into a top-1.
    with pytest.raises(TypeError, match="ranks must be integers"):
        metric(bad)
