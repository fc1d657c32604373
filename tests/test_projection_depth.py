"""Tests of flint_analysis.projection_depth against independent computations.

Oracles: brute-force formulas in one dimension, scipy's MAD, a dense angular grid with iterated zoom
in two dimensions, and the data-depth package (``depth.model.multivariate.projection``), which
computes d = 1 exactly and otherwise returns approximate depths (upper bounds) together with the
direction it found (``option=2``). data-depth calls are kept to n ~ 501, d <= 10, m <= 50 and
NRandom = 1000 (well under a second each).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import median_abs_deviation

from flint_analysis.errors import InputError
from flint_analysis.projection_depth import (
    SEARCH_BUDGETS,
    ProjectionDepthResult,
    is_degenerate_reference,
    projection_depth,
    univariate_projection_depth,
)

try:
    from depth.model import multivariate as dd
except ImportError:  # data-depth is in the "test" extra; the tests that need it are skipped without it
    dd = None

requires_data_depth = pytest.mark.skipif(dd is None, reason="needs data-depth (pip install data-depth)")

DD_SOLVERS_WITH_EXACT_DIRECTIONS = ("refinedrandom", "coordinatedescent", "simulatedannealing", "randomsimplices")
DD_SEARCH_SOLVERS = ("neldermead", "refinedrandom", "coordinatedescent", "simulatedannealing")


def gaussian_problem(seed: int, n: int, d: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal((m, d))


def brute_force_univariate_depth(z: float, x: np.ndarray, mad_convention: str) -> float:
    """D = MAD / (MAD + |z - med|) from a full sort, with 0/0 = 1."""
    values = np.sort(x)
    n = values.size
    median = values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])
    deviations = np.sort(np.abs(values - median))
    if n % 2 or mad_convention == "upper":
        mad = deviations[n // 2]
    else:
        mad = 0.5 * (deviations[n // 2 - 1] + deviations[n // 2])
    deviation = abs(z - median)
    if mad == 0:
        return 1.0 if deviation == 0 else 0.0
    return mad / (mad + deviation)


def univariate_along(result: ProjectionDepthResult, queries: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The exact depth of each query along its reported direction, in original coordinates."""
    return np.array(
        [
            univariate_projection_depth(
                np.array([queries[i] @ result.direction[i]]), reference @ result.direction[i], result.mad_convention
            )[0]
            for i in range(queries.shape[0])
        ]
    )


def assert_witness_proves_zero(query: np.ndarray, reference: np.ndarray, direction: np.ndarray) -> None:
    """Along the witness a majority (floor(n/2) + 1) of the projections coincide up to rounding and the
    query is far off their common value. Both bounds are relative to s = max_i sum_j |x_ij v_j|, since
    d * eps * s bounds the rounding of a projection on any CPU or BLAS: no rounding coincidence."""
    projections = reference @ direction
    median = np.median(projections)
    majority_spread = np.sort(np.abs(projections - median))[reference.shape[0] // 2]
    magnitude = max(float((np.abs(reference) @ np.abs(direction)).max()), float(np.abs(query) @ np.abs(direction)))
    assert majority_spread <= 1e-10 * magnitude
    assert abs(query @ direction - median) >= 1e-2 * magnitude


def exact_depth_2d(queries: np.ndarray, reference: np.ndarray, n_angles: int = 50_000, top: int = 8) -> np.ndarray:
    """Projection depth in d = 2 by a dense grid of angles in [0, pi) and an iterated zoom on the best.

    The coarse grid's median and MAD are shared by all queries; each of a query's ``top`` best angles
    is then refined by 8 levels of a 201-point grid over +-2 spacings (down to ~1e-17 rad).
    """

    def outlyingness(angles: np.ndarray, query: np.ndarray) -> np.ndarray:
        directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        depth = univariate_projection_depth((directions @ query)[:, None], directions @ reference.T)[:, 0]
        return np.where(depth > 0, 1.0 / np.maximum(depth, 1e-300) - 1.0, np.inf)

    angles = np.linspace(0.0, np.pi, n_angles, endpoint=False)
    spacing = np.pi / n_angles
    directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    coarse = np.concatenate(
        [
            1.0 / univariate_projection_depth(directions[s : s + 5000] @ queries.T, directions[s : s + 5000] @ reference.T)
            - 1.0
            for s in range(0, n_angles, 5000)
        ]
    )
    depths = np.empty(queries.shape[0])
    for i, query in enumerate(queries):
        best = 0.0
        for angle in angles[np.argsort(-coarse[:, i])[:top]]:
            center, width = angle, 2 * spacing
            for _ in range(8):
                fine = np.linspace(center - width, center + width, 201)
                values = outlyingness(fine, query)
                center, width = fine[int(np.argmax(values))], width * 2 / 100
                best = max(best, float(values.max()))
        depths[i] = 1.0 / (1.0 + best)
    return depths


# --------------------------------------------------------------------------------------------------
# One dimension
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mad_convention", ["average", "upper"])
@pytest.mark.parametrize(
    "reference",
    [
        np.random.default_rng(0).standard_normal(101),  # odd n
        np.random.default_rng(1).standard_normal(100),  # even n
        np.random.default_rng(2).integers(0, 6, 60).astype(float),  # ties, even n
        np.random.default_rng(3).integers(0, 4, 41).astype(float),  # ties, odd n
    ],
)
def test_univariate_matches_brute_force(reference: np.ndarray, mad_convention: str) -> None:
    queries = np.concatenate([np.linspace(-4, 6, 41), reference[:5]])
    expected = [brute_force_univariate_depth(z, reference, mad_convention) for z in queries]
    np.testing.assert_allclose(univariate_projection_depth(queries, reference, mad_convention), expected, rtol=1e-14, atol=0)


def test_univariate_pins_mad_conventions() -> None:
    reference = np.array([0.0, 1.0, 2.0, 3.0])
    # med 1.5, |deviations| 1.5, .5, .5, 1.5: upper MAD 1.5 (data-depth), averaged MAD 1.0 (scipy).
    assert univariate_projection_depth(np.array([3.5]), reference, "upper")[0] == pytest.approx(3 / 7, abs=1e-15)
    assert univariate_projection_depth(np.array([3.5]), reference, "average")[0] == pytest.approx(1 / 3, abs=1e-15)
    with pytest.raises(InputError):
        univariate_projection_depth(np.array([3.5]), reference, "lower")


@pytest.mark.parametrize("n", [100, 101])
def test_univariate_average_convention_matches_scipy(n: int) -> None:
    rng = np.random.default_rng(n)
    reference = rng.standard_normal(n) * 3 + 1
    queries = rng.standard_normal(30) * 5
    mad = median_abs_deviation(reference, scale=1.0)
    expected = mad / (mad + np.abs(queries - np.median(reference)))
    np.testing.assert_allclose(univariate_projection_depth(queries, reference), expected, rtol=1e-14, atol=0)


@requires_data_depth
@pytest.mark.parametrize(
    "reference",
    [
        np.random.default_rng(5).standard_normal(501),
        np.random.default_rng(6).standard_normal(500),
        np.random.default_rng(7).integers(0, 7, 300).astype(float),
    ],
    ids=["odd", "even", "ties"],
)
def test_univariate_matches_data_depth_in_one_dimension(reference: np.ndarray) -> None:
    queries = np.concatenate([np.linspace(-3, 8, 23), reference[:7]])
    expected = dd.projection(queries[:, None], reference[:, None], solver="neldermead", NRandom=100)
    ours = univariate_projection_depth(queries, reference, "upper")
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-15)
    # projection_depth with d = 1 is exact and equal to it.
    result = projection_depth(queries[:, None], reference[:, None], mad_convention="upper")
    np.testing.assert_array_equal(result.depth, ours)
    assert result.exact.all()


def test_univariate_batched_form_matches_rows() -> None:
    rng = np.random.default_rng(8)
    reference, queries = rng.standard_normal((6, 50)), rng.standard_normal((6, 9))
    batched = univariate_projection_depth(queries, reference, "upper")
    assert batched.shape == (6, 9)
    for row in range(6):
        np.testing.assert_array_equal(batched[row], univariate_projection_depth(queries[row], reference[row], "upper"))


def test_univariate_zero_mad_policy_never_nan() -> None:
    reference = np.array([0.0, 0.0, 0.0, 1.0, 5.0])  # median 0, MAD 0
    depths = univariate_projection_depth(np.array([0.0, 1e-300, 1.0]), reference)
    # 0/0 at the median counts as O = 0 (data-depth returns 0 there); off the median O = inf.
    np.testing.assert_array_equal(depths, [1.0, 0.0, 0.0])
    result = projection_depth(np.array([[0.0], [1.0]]), reference[:, None])
    np.testing.assert_array_equal(result.depth, [1.0, 0.0])
    assert result.outlyingness[0] == 0.0 and np.isposinf(result.outlyingness[1])
    assert result.exact.all()


# --------------------------------------------------------------------------------------------------
# Accuracy of the search
# --------------------------------------------------------------------------------------------------


def test_two_dimensions_match_dense_angular_grid() -> None:
    reference, queries = gaussian_problem(seed=11, n=501, d=2, m=20)
    queries[0] *= 3  # a far point
    exact = exact_depth_2d(queries, reference)
    result = projection_depth(queries, reference)
    # Every evaluated direction is real: the search can't go below the exact depth.
    assert np.all(result.depth >= exact - 1e-9)
    assert np.max(np.abs(result.depth - exact)) <= 2e-3
    np.testing.assert_allclose(univariate_along(result, queries, reference), result.depth, rtol=1e-12, atol=0)


@requires_data_depth
@pytest.mark.parametrize("d", [2, 5, 10])
def test_dominates_data_depth_on_gaussian_data(d: int) -> None:
    reference, queries = gaussian_problem(seed=100 + d, n=501, d=d, m=50)
    dd_depths = {
        solver: dd.projection(queries, reference, solver=solver, NRandom=1000) for solver in DD_SEARCH_SOLVERS
    }
    best_dd = np.min(list(dd_depths.values()), axis=0)
    # Per point against the best of four data-depth searches (4000 directions per point): needs a
    # comparable budget, so 16 climbs instead of the default 4.
    thorough = projection_depth(queries, reference, n_climbs=16)
    assert np.all(thorough.depth <= best_dd * 1.03)
    # On average the default settings beat data-depth's default solver.
    default = projection_depth(queries, reference)
    assert default.depth.mean() <= dd_depths["neldermead"].mean() + 1e-3
    for result in (thorough, default):
        np.testing.assert_allclose(univariate_along(result, queries, reference), result.depth, rtol=1e-12, atol=0)


@requires_data_depth
@pytest.mark.parametrize("n", [500, 501])
@pytest.mark.parametrize("solver", DD_SOLVERS_WITH_EXACT_DIRECTIONS)
def test_univariate_depth_along_data_depth_directions(solver: str, n: int) -> None:
    reference, queries = gaussian_problem(seed=n, n=n, d=5, m=20)
    depths, directions = dd.projection(queries, reference, solver=solver, NRandom=300, option=2)
    ours = np.array(
        [
            univariate_projection_depth(np.array([queries[i] @ directions[i]]), reference @ directions[i], "upper")[0]
            for i in range(queries.shape[0])
        ]
    )
    np.testing.assert_allclose(ours, depths, rtol=0, atol=1e-12)


def test_affine_invariance() -> None:
    reference, queries = gaussian_problem(seed=21, n=501, d=10, m=50)
    rng = np.random.default_rng(22)
    left, _, right = np.linalg.svd(rng.standard_normal((10, 10)))
    transform = left @ np.diag(np.logspace(0, 2, 10)) @ right  # cond = 100
    shift = rng.standard_normal(10) * 5
    assert np.linalg.cond(transform) == pytest.approx(100)
    plain = projection_depth(queries, reference)
    moved = projection_depth(queries @ transform.T + shift, reference @ transform.T + shift)
    assert np.median(np.abs(moved.depth - plain.depth) / plain.depth) <= 0.02


# --------------------------------------------------------------------------------------------------
# Degenerate references (strict policy)
# --------------------------------------------------------------------------------------------------


def test_constant_column() -> None:
    rng = np.random.default_rng(31)
    planar = rng.standard_normal((501, 2))
    reference = np.column_stack([planar, np.full(501, 2.5)])
    inside = np.array([[0.3, -0.2], [1.0, 0.5]])
    queries = np.vstack([np.column_stack([inside, [2.5, 2.5]]), [[0.3, -0.2, 2.6]]])
    result = projection_depth(queries, reference)
    # Off the constant: MAD = 0 on axis 3, depth exactly 0, proven by that axis.
    assert result.depth[2] == 0.0 and result.exact[2] and np.isposinf(result.outlyingness[2])
    np.testing.assert_array_equal(np.abs(result.direction[2]), [0.0, 0.0, 1.0])
    # On the constant: the depth of the first two coordinates (documented), here checked exactly.
    exact = exact_depth_2d(inside, planar)
    assert np.all(result.depth[:2] >= exact - 1e-9) and np.all(result.depth[:2] <= exact + 2e-3)
    assert not result.exact[:2].any()
    assert result.degenerate_reference and is_degenerate_reference(reference)


def test_binary_data_mad_zero_axes() -> None:
    rng = np.random.default_rng(32)
    reference = (rng.random((101, 5)) < 0.2).astype(float)  # every coordinate: median 0, MAD 0
    queries = np.array([[1.0, 0, 0, 0, 0], [0, 0, 0, 1.0, 1.0], [0.0, 0, 0, 0, 0]])
    result = projection_depth(queries, reference)
    np.testing.assert_array_equal(result.depth[:2], [0.0, 0.0])
    assert result.exact[:2].all()
    np.testing.assert_array_equal(result.direction[0], [1.0, 0, 0, 0, 0])
    # Along the certificate the MAD is exactly 0 and the query is off the median.
    column = reference @ result.direction[1]
    assert np.median(np.abs(column - np.median(column))) == 0.0 and queries[1] @ result.direction[1] != np.median(column)
    # The coordinatewise median: every axis gives 0/0 (O = 0), so its depth comes from the search;
    # it is documented as such and must agree with the univariate depth along its direction.
    assert 0.0 < result.depth[2] < 1.0 and not result.exact[2]
    np.testing.assert_allclose(univariate_along(result, queries, reference)[2], result.depth[2], rtol=1e-12)
    assert is_degenerate_reference(reference)


def test_majority_of_identical_points_gives_depth_one_at_that_point() -> None:
    rng = np.random.default_rng(33)
    # A point with inexact products (not small integers), so that the test does not rest on rounding
    # luck: equal points must project bitwise equally on any BLAS. It was 0.43, or a false exact 0.
    point = rng.standard_normal(8)
    reference = np.vstack([np.tile(point, (11, 1)), rng.standard_normal((10, 8))])[rng.permutation(21)]
    result = projection_depth(np.vstack([point, point + 0.5 * np.eye(8)[1]]), reference)
    # Every direction: median = that point's projection and MAD = 0, so O = 0/0 = 0 there.
    assert result.depth[0] == 1.0
    assert result.depth[1] == 0.0 and result.exact[1]


def test_more_dimensions_than_points() -> None:
    rng = np.random.default_rng(34)
    reference = rng.standard_normal((20, 30))
    queries = np.vstack([rng.standard_normal((2, 30)), reference[:5].mean(axis=0), reference[3]])
    result = projection_depth(queries, reference)
    np.testing.assert_array_equal(result.depth, np.zeros(4))
    assert result.exact.all() and np.isposinf(result.outlyingness).all()
    for query, direction in zip(queries, result.direction):
        # Off the affine hull (first two) or off the hull of a majority (11 of 20) that excludes the
        # query (the last one is reference[3] itself): MAD = 0 up to rounding, the query far off.
        assert_witness_proves_zero(query, reference, direction)
    assert is_degenerate_reference(reference)


def test_n_at_most_twice_the_rank_gives_zero_everywhere() -> None:
    rng = np.random.default_rng(35)
    reference = rng.standard_normal((21, 12))  # full rank 12 >= floor(21/2) + 1 = 11
    queries = np.vstack([reference.mean(axis=0), reference[0], np.zeros(12)])
    result = projection_depth(queries, reference)
    np.testing.assert_array_equal(result.depth, np.zeros(3))
    assert result.exact.all()
    for query, direction in zip(queries, result.direction):
        assert_witness_proves_zero(query, reference, direction)
    assert is_degenerate_reference(reference)
    assert not is_degenerate_reference(rng.standard_normal((501, 5)))


def test_rank_one_reference_is_exact() -> None:
    rng = np.random.default_rng(36)
    t = rng.standard_normal(51)
    line = np.array([1.0, -2.0, 0.5])
    reference = 3.0 + t[:, None] * line
    queries = np.array([3.0 + 0.7 * line, 3.0 + 0.7 * line + [0, 0.1, 0.2]])
    result = projection_depth(queries, reference)
    assert result.exact.all()
    assert result.depth[0] == pytest.approx(univariate_projection_depth(np.array([0.7]), t)[0], rel=1e-12)
    assert result.depth[1] == 0.0


# --------------------------------------------------------------------------------------------------
# Reproducibility, result object and input checks
# --------------------------------------------------------------------------------------------------


def test_same_seed_is_bitwise_equal_and_order_does_not_matter() -> None:
    reference, queries = gaussian_problem(seed=41, n=301, d=6, m=30)
    first = projection_depth(queries, reference, seed=3)
    again = projection_depth(queries, reference, seed=3)
    for name in ("depth", "outlyingness", "direction", "exact"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    permutation = np.random.default_rng(42).permutation(30)
    shuffled = projection_depth(queries[permutation], reference, seed=3)
    np.testing.assert_array_equal(shuffled.depth, first.depth[permutation])
    np.testing.assert_array_equal(shuffled.direction, first.direction[permutation])
    other_seed = projection_depth(queries, reference, seed=4)
    assert not np.array_equal(other_seed.depth, first.depth)
    assert np.median(np.abs(other_seed.depth - first.depth) / first.depth) <= 0.03


def test_result_fields_and_json() -> None:
    reference, queries = gaussian_problem(seed=51, n=101, d=3, m=4)
    queries = np.vstack([queries, [[0.0, 0.0, 50.0]]])
    reference[:, 2] = np.round(reference[:, 2])  # make axis 3 have ties but a positive MAD
    result = projection_depth(queries, reference, **SEARCH_BUDGETS["fast"])
    assert result.depth.shape == (5,) and result.direction.shape == (5, 3) and result.exact.dtype == bool
    assert np.all(np.isfinite(result.depth)) and np.all((result.depth >= 0) & (result.depth <= 1))
    np.testing.assert_allclose(np.linalg.norm(result.direction, axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(result.outlyingness, 1.0 / result.depth - 1.0, rtol=1e-12)
    assert (result.n_directions, result.refinement_rounds) == (500, 15)
    with pytest.raises(ValueError):
        result.depth[0] = 0.5  # read-only
    payload = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert payload["depth"] == pytest.approx(result.depth.tolist())
    assert payload["mad_convention"] == "average" and payload["seed"] == 0
    degenerate = projection_depth(np.array([[0.0, 0.0, 2.0]]), np.column_stack([reference[:, :2], np.ones(101)]))
    assert degenerate.to_dict()["outlyingness"] == [None]
    assert projection_depth(np.zeros((0, 3)), reference).depth.shape == (0,)


@pytest.mark.parametrize(
    "queries, reference, settings",
    [
        (np.zeros(3), np.zeros((5, 3)), {}),
        (np.zeros((2, 3)), np.zeros((5, 4)), {}),
        (np.zeros((2, 3)), np.zeros((1, 3)), {}),
        (np.array([[np.nan, 0.0, 0.0]]), np.ones((5, 3)), {}),
        (np.zeros((2, 3)), np.array([[np.inf, 0, 0]] * 5), {}),
        (np.zeros((2, 3)), np.ones((5, 3)), {"mad_convention": "median"}),
        (np.zeros((2, 3)), np.ones((5, 3)), {"n_directions": -1}),
        (np.zeros((2, 3)), np.ones((5, 3)), {"n_climbs": 0}),
        (np.zeros((2, 3)), np.ones((5, 3)), {"seed": -1}),
    ],
)
def test_invalid_inputs_raise_input_error(queries: np.ndarray, reference: np.ndarray, settings: dict) -> None:
    with pytest.raises(InputError):
        projection_depth(queries, reference, **settings)
