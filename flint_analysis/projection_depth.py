"""Projection depth of query points with respect to a reference sample.

The FLINT paper's supplement, Eq. (1), scores how typical a sample is with the projection depth of
Zuo & Serfling (2000, "General notions of statistical depth function", Ann. Statist. 28(2), 461-482):

    D(z | X) = (1 + O(z | X))^-1,   O(z | X) = sup_{|p| = 1} |<p, z> - med(<p, X>)| / MAD(<p, X>),

where MAD is the median absolute deviation from the median, *without* the 1.4826 consistency factor.

Conventions and policies (and why)
----------------------------------
- Median: the mean of the two middle values when n is even (numpy's, scipy's and data-depth's).
- MAD for even n: ``mad_convention="average"`` (default) is the mean of the two middle absolute
  deviations, as ``scipy.stats.median_abs_deviation`` computes it, so that numbers can be checked with
  the standard tools. ``"upper"`` takes the upper of the two, as the ``data-depth`` package
  (``depth.model.multivariate.projection``) does. Both agree for odd n.
- Strict policy for degenerate directions: MAD = 0 with the query off the median gives O = inf and
  D = 0; MAD = 0 with the query at the median (0/0) gives O = 0 for that direction (data-depth returns
  depth 0 there, which would make the median of discrete data its least deep point). No MAD floor and
  no dequantisation noise is added, because either would make the score depend on an arbitrary
  constant. Pixel data (FashionMNIST, QuickDraw) therefore get D = 0 for almost every query, and that
  is the exact value; ``exact`` says where a zero is proven. A depth is never NaN.
- Zero depth is proven without search in three ways: (a) a coordinate axis with MAD = 0 on which the
  query is off the median (checked exactly, in original coordinates); (b) a query off the affine hull
  of the reference (a residual in the null space of the centred data); (c) when
  floor(n/2) + 1 <= rank (roughly n <= 2d), a query off the affine hull of floor(n/2) + 1 reference
  points: along the normal of that hull a majority of the projections coincide, so MAD = 0. Rules (b)
  and (c) hold in exact arithmetic; a residual counts when it exceeds 1e-9 of the query's norm. The
  majority of rule (c) is the floor(n/2) + 1 points farthest from the query, so it never contains a
  query equal to a reference point.
- A witness of (b), (c) or the search is only trusted after a check in float64, original coordinates
  (``_certified_zero``): along it a majority of the projections lie within delta of their median and
  the query is off that median by more than 1e6 delta and more than 1e-9 of the magnitude of the
  dot products' terms (max_i sum_j |x_ij v_j|, which times d eps bounds their rounding). Even if the
  majority's spread were real, the depth along the witness would be below 1e-6, and no rounding of
  another CPU or BLAS can turn it into a median point. A witness that fails is discarded and the
  query is searched (or keeps its search value) with ``exact`` False. Rule (a) needs no margin: it
  compares stored coordinates, which involves no rounding.
- The affine rank is decided on the spread of the centred data along eigenvectors of its Gram matrix;
  when some spread is below 1e-6 of the largest (rank-deficient or badly conditioned data), those
  eigenvectors are only accurate to about eps * largest / smallest, so the basis is recomputed from an
  SVD of the data, whose singular values are accurate to eps * largest on any LAPACK. (Deciding it on
  the Gram eigenvectors alone kept a noise direction on some CPUs, and whitening stretched that noise
  by about 1e14 into a fake "off the hull" certificate.)
- Everything else is a search over real directions, so the returned outlyingness is a *lower bound*
  on O and the depth an *upper bound* on D. The final value is recomputed in float64 in original
  coordinates along ``direction``: ``univariate_projection_depth(z @ v, X @ v)`` reproduces it (to
  rounding; the code computes z's and X's projections by one row-wise sum, so that equal points
  project bitwise equally and a query equal to a majority of identical points gets 0/0 = O = 0).
  How close the bound gets depends on the budget; in high dimension with n not much larger than d
  the sample supremum keeps growing with the budget, so compare numbers only at a fixed budget
  and seed.

Algorithm (time O(directions x n x d), memory about 3 x chunk_size x n float32 values)
--------------------------------------------------------------------------------------
1. Standardise (``standardize=True``): drop constant columns, scale the others by their standard
   deviation, eigen-decompose the Gram matrix of the centred data, keep the directions whose measured
   spread exceeds ``max(n, d) * eps`` of the largest, and whiten (unit sample covariance). This makes
   the search affine invariant; on anisotropic data a search in raw coordinates is not.
2. A shared stage of seeded Gaussian directions in whitened coordinates (one matrix product per
   block of directions, shared by all queries).
3. Per query, start directions: the best shared directions, z_w - med(X_w), z_w (the Mahalanobis
   direction S^-1 (z - mean)), z - coordinatewise median, and the best coordinate axis.
4. ``n_climbs`` local climbs per query from its best starts, batched over all queries. Each round a
   climb tries 2 steps (h, h/2) along the tangent projection of a smoothed subgradient and 2 random
   tangent moves of radius <= h; h shrinks by 0.7 after a round without improvement. The smoothed
   subgradient replaces the median point and the MAD point by the means of the 2 sqrt(n) points
   nearest to them (the one-point subgradient is noise in high dimension). At equal cost, 4 climbs of
   4 moves beat 1 climb of 16 moves at every d measured (2 to 784): the outlyingness surface has many
   narrow local maxima, and in high dimension the gradient steps matter more than random moves. The
   search runs in float32 (twice the GEMM and selection speed); only the final value is float64.
5. An exact check of the d coordinate axes in original coordinates (catches MAD = 0 axes exactly).

Reproducibility: the shared directions depend on ``seed`` only; each query's random moves come from a
stream seeded by ``(seed, hash of the query's bytes, climb)``; and the queries are processed in a
canonical order (sorted by that hash), so shuffling the queries permutes the output bitwise, and the
same seed gives bitwise-equal results on the same machine and thread count. A query's result depends
on the other queries in the call only through BLAS rounding of the batched products.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np
import scipy.sparse

from flint_analysis.errors import InputError

__all__ = [
    "MAD_CONVENTIONS",
    "SEARCH_BUDGETS",
    "ProjectionDepthResult",
    "is_degenerate_reference",
    "projection_depth",
    "univariate_projection_depth",
]

MAD_CONVENTIONS: tuple[str, ...] = ("average", "upper")

# Search budgets; "full" is the default. Use as ``projection_depth(Z, X, **SEARCH_BUDGETS["fast"])``.
# Per-query cost is about n_climbs * 4 * refinement_rounds directions: "fast" 1/2, "big" 8x "full".
SEARCH_BUDGETS: Mapping[str, Mapping[str, int]] = MappingProxyType(
    {
        "fast": MappingProxyType({"n_directions": 500, "refinement_rounds": 15, "n_climbs": 4}),
        "full": MappingProxyType({"n_directions": 1000, "refinement_rounds": 30, "n_climbs": 4}),
        "big": MappingProxyType({"n_directions": 5000, "refinement_rounds": 60, "n_climbs": 16}),
    }
)

_LADDER_STEPS = 2
_RANDOM_MOVES = 2
_MOVES_PER_CLIMB = _LADDER_STEPS + _RANDOM_MOVES
_INITIAL_STEP = 1.0
_STEP_DECAY = 0.7
_HULL_RTOL = 1e-9
_GRAM_RTOL = 1e-6  # below this relative spread, Gram eigenvectors are not trusted (an SVD decides)
_CERTIFICATE_RTOL = 1e-9  # a witness's query gap, relative to the magnitude of the dot products
_CERTIFICATE_RATIO = 1e6  # a witness's query gap, relative to the spread of the majority along it
_SEARCH_DTYPE = np.float32


@dataclass(frozen=True)
class ProjectionDepthResult:
    """Projection depth of m query points in d dimensions (arrays are read-only).

    Attributes
    ----------
    depth : np.ndarray, shape (m,)
        D in [0, 1], float64, always finite. An upper bound on the exact depth where ``exact`` is False.
    outlyingness : np.ndarray, shape (m,)
        O = 1 / D - 1, float64; +inf exactly where ``depth`` is 0.
    direction : np.ndarray, shape (m, d)
        Unit vectors in original coordinates achieving ``outlyingness``. For a proven zero depth it is
        the certificate: a coordinate axis with MAD = 0, or a normal of the affine hull of the
        reference (or of a majority subset of it) that the query is off.
    exact : np.ndarray, shape (m,), bool
        True where the value is exact: a zero depth proven by one of the rules (or by a searched
        direction whose recomputed MAD is exactly 0 while the query is off the median), d = 1, or a
        reference of rank <= 1. Every zero but an axis one is certified in float64 along ``direction``
        with a margin far above rounding (see the module notes), so it holds on any machine.
    degenerate_reference : bool
        ``is_degenerate_reference(reference)``: the exact depth is 0 for most queries.
    n_directions, refinement_rounds, n_climbs, seed, mad_convention, standardize
        The settings used.
    """

    depth: np.ndarray
    outlyingness: np.ndarray
    direction: np.ndarray
    exact: np.ndarray
    degenerate_reference: bool
    n_directions: int
    refinement_rounds: int
    n_climbs: int
    seed: int
    mad_convention: str
    standardize: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe plain Python: lists and scalars, with an infinite outlyingness stored as None."""
        return {
            "depth": [float(value) for value in self.depth],
            "outlyingness": [float(value) if np.isfinite(value) else None for value in self.outlyingness],
            "direction": self.direction.tolist(),
            "exact": [bool(value) for value in self.exact],
            "degenerate_reference": bool(self.degenerate_reference),
            "n_directions": int(self.n_directions),
            "refinement_rounds": int(self.refinement_rounds),
            "n_climbs": int(self.n_climbs),
            "seed": int(self.seed),
            "mad_convention": str(self.mad_convention),
            "standardize": bool(self.standardize),
        }


# --------------------------------------------------------------------------------------------------
# One dimension
# --------------------------------------------------------------------------------------------------


def _median_and_mad(projections: np.ndarray, mad_convention: str) -> tuple[np.ndarray, np.ndarray]:
    """Median and MAD of each row: (..., n) -> (...,), (...,), in the input's dtype.

    scipy.stats.median_abs_deviation (and np.median) are not used because this runs on blocks of
    thousands of rows every refinement round, and they select twice per statistic (two middle values).
    One selection with a single kth per statistic suffices: for even n the lower middle value is the
    maximum of the left part. The research notes measured a two-kth np.partition at 4x the cost of a
    single-kth one (numpy 2.4 on the development machine: about equal, so it is never slower).
    """
    n = projections.shape[-1]
    upper = n // 2
    work = np.partition(projections, upper, axis=-1)
    median = work[..., upper].copy()
    if n % 2 == 0:
        median = 0.5 * (work[..., :upper].max(axis=-1) + median)
    np.subtract(projections, median[..., None], out=work)
    np.abs(work, out=work)
    work.partition(upper, axis=-1)
    mad = work[..., upper].copy()
    if n % 2 == 0 and mad_convention == "average":
        mad = 0.5 * (work[..., :upper].max(axis=-1) + mad)
    return median, mad


def _outlyingness(query_projections: np.ndarray, median: np.ndarray, mad: np.ndarray) -> np.ndarray:
    """|q - med| / MAD elementwise (broadcast), with 0/0 = 0 and x/0 = inf for x > 0; never NaN."""
    deviation = np.abs(np.asarray(query_projections, dtype=np.float64) - median)
    mad = np.broadcast_to(np.asarray(mad, dtype=np.float64), deviation.shape)
    positive = mad > 0
    ratio = np.divide(deviation, mad, out=np.zeros_like(deviation), where=positive)
    return np.where(positive, ratio, np.where(deviation > 0, np.inf, 0.0))


def _depth_from_outlyingness(outlyingness: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + outlyingness)


def _check_mad_convention(mad_convention: str) -> None:
    if mad_convention not in MAD_CONVENTIONS:
        raise InputError(f"mad_convention must be one of {', '.join(MAD_CONVENTIONS)}, got {mad_convention!r}")


def univariate_projection_depth(
    query_projections: np.ndarray, reference_projections: np.ndarray, mad_convention: str = "average"
) -> np.ndarray:
    """Exact projection depth in one dimension: D = MAD / (MAD + |q - med|).

    Parameters
    ----------
    query_projections : np.ndarray, shape (m,) or (k, m)
        Projections of the queries (one row per direction in the batched form).
    reference_projections : np.ndarray, shape (n,) or (k, n)
        Projections of the reference sample, n >= 1.
    mad_convention : {"average", "upper"}, default "average"
        For even n, the MAD is the mean of the two middle absolute deviations ("average", as
        scipy.stats.median_abs_deviation) or the upper one ("upper", as data-depth).

    Returns
    -------
    np.ndarray, shape (m,) or (k, m)
        Depths in [0, 1], float64: 1 where MAD = 0 and the query is at the median (0/0 counts as
        O = 0), 0 where MAD = 0 and it is not.
    """
    _check_mad_convention(mad_convention)
    queries = np.asarray(query_projections, dtype=np.float64)
    reference = np.asarray(reference_projections, dtype=np.float64)
    if queries.ndim not in (1, 2) or queries.ndim != reference.ndim:
        raise InputError(
            "projections must be both 1-D, (m,) and (n,), or both 2-D, (k, m) and (k, n); "
            f"got shapes {queries.shape} and {reference.shape}"
        )
    if queries.ndim == 2 and queries.shape[0] != reference.shape[0]:
        raise InputError(
            f"batched projections need the same number of rows k, got {queries.shape[0]} and {reference.shape[0]}"
        )
    if reference.shape[-1] < 1:
        raise InputError("reference_projections is empty; it needs at least one value")
    if not (np.isfinite(queries).all() and np.isfinite(reference).all()):
        raise InputError("projections contain NaN or infinite values")
    median, mad = _median_and_mad(reference, mad_convention)
    return _depth_from_outlyingness(_outlyingness(queries, median[..., None], mad[..., None]))


# --------------------------------------------------------------------------------------------------
# Input checks and geometry
# --------------------------------------------------------------------------------------------------


def _as_matrix(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 2:
        raise InputError(f"{name} must be a 2-D array (points x dimensions), got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_) or np.iscomplexobj(array):
        raise InputError(f"{name} must hold real numbers, got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float64)
    if not np.isfinite(array).all():
        raise InputError(f"{name} contains NaN or infinite values")
    return array


def _check_reference(reference: np.ndarray) -> np.ndarray:
    matrix = _as_matrix(reference, "reference")
    if matrix.shape[0] < 2:
        raise InputError(f"reference needs at least 2 points, got {matrix.shape[0]}")
    if matrix.shape[1] < 1:
        raise InputError("reference needs at least 1 dimension, got 0")
    return matrix


def _check_settings(n_directions: int, refinement_rounds: int, n_climbs: int, seed: int, chunk_size: int) -> None:
    for name, value, minimum in (
        ("n_directions", n_directions, 0),
        ("refinement_rounds", refinement_rounds, 0),
        ("n_climbs", n_climbs, 1),
        ("seed", seed, 0),
        ("chunk_size", chunk_size, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class _Geometry:
    """The reference in whitened coordinates (k = affine rank, d' = number of non-constant columns).

    Attributes
    ----------
    columns : (d',) indices of the non-constant columns.
    mean, scale : (d',) centre and scale of those columns ("scaled coordinates" = (x - mean) / scale).
    basis : (d', k) orthonormal basis of the centred data's span, in scaled coordinates.
    whiten : (d', k) maps scaled coordinates to whitened ones; ``unwhiten`` (k, d') maps a direction
        acting on scaled coordinates to the whitened direction with the same projections.
    points : (n, k) float64 whitened reference; ``points_search`` (n, k) and ``points_search_t`` (k, n)
        are float32 copies for the search.
    typical_norm : root mean square norm of the scaled, centred reference points.
    """

    columns: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    basis: np.ndarray
    whiten: np.ndarray
    unwhiten: np.ndarray
    points: np.ndarray
    points_search: np.ndarray
    points_search_t: np.ndarray
    typical_norm: float

    @property
    def rank(self) -> int:
        return self.basis.shape[1]


def _fit_geometry(reference: np.ndarray, standardize: bool) -> _Geometry:
    n = reference.shape[0]
    columns = np.flatnonzero(np.ptp(reference, axis=0) > 0)
    data = reference[:, columns]
    mean = data.mean(axis=0)
    scale = data.std(axis=0) if standardize else np.ones(columns.size)
    scale = np.where(scale > 0, scale, 1.0)
    centred = (data - mean) / scale
    # The Gram matrix is cheap (an SVD of a 6000 x 784 reference costs about 3x more), but its small
    # eigenvalues are only accurate to eps * largest; so the rank is decided on the spread measured
    # along each eigenvector. That measure is accurate to eps * |x|, but the eigenvector itself leans
    # into the data's span by about eps * largest / smallest spread, hence the SVD fallback.
    _, eigenvectors = np.linalg.eigh(centred.T @ centred)
    projected = centred @ eigenvectors
    spread = np.sqrt(np.sum(projected * projected, axis=0))
    if np.any(spread <= spread.max(initial=0.0) * _GRAM_RTOL):
        # Small spreads along Gram eigenvectors are noise of order eps * largest / smallest nonzero
        # spread, which differs between LAPACK builds and can exceed the threshold below (a null
        # direction kept, then stretched by ~1e14 by the whitening). An SVD's singular values are
        # accurate to eps * largest; its directions are put in eigh's ascending order.
        _, _, right = np.linalg.svd(centred, full_matrices=False)
        eigenvectors = np.ascontiguousarray(right[::-1].T)
        projected = centred @ eigenvectors
        spread = np.sqrt(np.sum(projected * projected, axis=0))
    keep = spread > spread.max(initial=0.0) * max(n, columns.size) * np.finfo(np.float64).eps
    basis = np.ascontiguousarray(eigenvectors[:, keep])
    stretch = np.sqrt(n - 1) / spread[keep] if standardize else np.ones(basis.shape[1])
    points = np.ascontiguousarray(projected[:, keep] * stretch)
    points_search = points.astype(_SEARCH_DTYPE)
    return _Geometry(
        columns=columns,
        mean=mean,
        scale=scale,
        basis=basis,
        whiten=basis * stretch,
        unwhiten=np.ascontiguousarray(basis.T / stretch[:, None]),
        points=points,
        points_search=points_search,
        points_search_t=np.ascontiguousarray(points_search.T),
        typical_norm=float(np.sqrt(np.mean(np.sum(centred * centred, axis=1)))) if columns.size else 0.0,
    )


def _scaled(geometry: _Geometry, queries: np.ndarray) -> np.ndarray:
    """Queries (m, d) in the centred, scaled coordinates of the non-constant columns (m, d')."""
    return (queries[:, geometry.columns] - geometry.mean) / geometry.scale


def _scaled_to_original(geometry: _Geometry, vectors: np.ndarray, dimension: int) -> np.ndarray:
    """Directions acting on scaled coordinates (r, d') as unit directions in original ones (r, d).

    <v_s, (x - mean) / scale> = <v_s / scale, x - mean>, so the original direction is v_s / scale.
    """
    directions = np.zeros((vectors.shape[0], dimension))
    directions[:, geometry.columns] = vectors / geometry.scale
    return _normalize_rows(directions)


def _whitened_to_original(geometry: _Geometry, vectors: np.ndarray, dimension: int) -> np.ndarray:
    """Whitened directions (r, k) as unit directions in original coordinates (r, d)."""
    return _scaled_to_original(geometry, vectors @ geometry.whiten.T, dimension)


def _normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Unit vectors along the last axis; zero vectors stay zero."""
    norms = np.sqrt(np.sum(vectors * vectors, axis=-1, keepdims=True))
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def _reference_is_degenerate(reference: np.ndarray, geometry: _Geometry, axis_mad: np.ndarray) -> bool:
    n, d = reference.shape
    return bool(geometry.rank < d or n // 2 + 1 <= geometry.rank or np.any(axis_mad == 0))


def is_degenerate_reference(reference: np.ndarray) -> bool:
    """Whether the exact projection depth on this reference is 0 for most queries.

    True when (a) the reference is rank-deficient (affine rank < d, e.g. d >= n or a constant
    column): every query off its affine hull has depth 0; or (b) floor(n/2) + 1 <= rank (about
    n <= 2d): any floor(n/2) + 1 points lie on a hyperplane whose normal has MAD = 0, so almost every
    query has depth 0; or (c) some coordinate has MAD = 0 (discrete data such as pixels): every query
    off the median on that coordinate has depth 0. A search-based estimate on such data measures how
    far the search got rather than the depth; ``projection_depth`` returns the proven zeros instead.

    Parameters
    ----------
    reference : np.ndarray, shape (n, d)

    Returns
    -------
    bool
    """
    matrix = _check_reference(reference)
    _, axis_mad = _median_and_mad(np.ascontiguousarray(matrix.T), "average")
    return _reference_is_degenerate(matrix, _fit_geometry(matrix, standardize=True), axis_mad)


# --------------------------------------------------------------------------------------------------
# Exact rules for zero depth
# --------------------------------------------------------------------------------------------------


def _axis_outlyingness(
    queries: np.ndarray, reference: np.ndarray, mad_convention: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact outlyingness along every coordinate axis: best value (m,), its axis (m,), and MAD per axis (d,)."""
    median, mad = _median_and_mad(np.ascontiguousarray(reference.T), mad_convention)
    values = _outlyingness(queries, median, mad)
    best_axes = np.argmax(values, axis=1) if queries.shape[0] else np.zeros(0, dtype=np.intp)
    return values[np.arange(queries.shape[0]), best_axes], best_axes, mad


def _null_space_residuals(geometry: _Geometry, queries_scaled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Residuals (m, d') of the queries off the reference's affine hull, and which exceed the tolerance (m,)."""
    residuals = queries_scaled - (queries_scaled @ geometry.basis) @ geometry.basis.T
    norms = np.sqrt(np.sum(residuals * residuals, axis=1))
    tolerance = _HULL_RTOL * (np.sqrt(np.sum(queries_scaled * queries_scaled, axis=1)) + geometry.typical_norm)
    return residuals, norms > tolerance


def _majority_hyperplane_residual(geometry: _Geometry, query_whitened: np.ndarray) -> np.ndarray | None:
    """A whitened direction along which floor(n/2) + 1 reference points project equally but the query does not.

    The subset is the floor(n/2) + 1 reference points farthest from the query (so that a query equal
    to a reference point is not in it). Only meaningful when floor(n/2) + 1 <= rank.
    """
    majority = geometry.points.shape[0] // 2 + 1
    distances = np.sum((geometry.points - query_whitened) ** 2, axis=1)
    subset = geometry.points[np.sort(np.argpartition(-distances, majority - 1)[:majority])]
    offset = query_whitened - subset[0]
    spanning, _ = np.linalg.qr((subset[1:] - subset[0]).T)
    residual = offset - spanning @ (spanning.T @ offset)
    tolerance = _HULL_RTOL * (np.sqrt(np.sum(offset * offset)) + np.sqrt(geometry.rank))
    return residual if np.sqrt(np.sum(residual * residual)) > tolerance else None


def _certified_zero(queries: np.ndarray, reference: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Whether each unit direction (r, d), original coordinates, proves depth 0 for its query (r, d): (r,).

    Along v, let delta be the upper MAD (floor(n/2) + 1 projections lie within delta of the median)
    and s = max_i sum_j |x_ij v_j| over the reference and the query (d eps s bounds the rounding of a
    projection). The zero is certified when |<v, z> - med| > max(1e-9 s, 1e6 delta): the query is
    off the majority's common value by far more than rounding on any machine, and even a real spread
    delta would leave a depth below 1e-6 along v. Whitened-coordinate checks cannot see this: there a
    near-null direction is stretched to unit scale.
    """
    if not directions.shape[0]:
        return np.zeros(0, dtype=bool)
    projections = np.ascontiguousarray(directions @ reference.T)
    median, spread = _median_and_mad(projections, "upper")
    gap = np.abs(np.sum(queries * directions, axis=1) - median)
    magnitude = np.maximum(
        (np.abs(directions) @ np.abs(reference).T).max(axis=1), np.sum(np.abs(queries * directions), axis=1)
    )
    return (gap > _CERTIFICATE_RTOL * magnitude) & (gap > _CERTIFICATE_RATIO * spread)


# --------------------------------------------------------------------------------------------------
# Search
# --------------------------------------------------------------------------------------------------


def _query_keys(queries: np.ndarray) -> list[bytes]:
    """A 16-byte hash of each query's float64 bytes: its random stream and its canonical position."""
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in queries]


def _climb_generator(seed: int, key: bytes, climb: int) -> np.random.Generator:
    words = np.frombuffer(key, dtype=np.uint32).tolist()
    return np.random.default_rng(np.random.SeedSequence([seed, 1, climb, *words]))


def _shared_directions(
    geometry: _Geometry, n_directions: int, seed: int, mad_convention: str, chunk_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded Gaussian directions (k, B) in whitened coordinates with the reference's median and MAD (B,)."""
    generator = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    directions = generator.standard_normal((geometry.rank, n_directions))
    medians = np.empty(n_directions)
    mads = np.empty(n_directions)
    for start in range(0, n_directions, chunk_size):
        block = directions[:, start : start + chunk_size].T.astype(_SEARCH_DTYPE)
        medians[start : start + block.shape[0]], mads[start : start + block.shape[0]] = _median_and_mad(
            block @ geometry.points_search_t, mad_convention
        )
    return directions, medians, mads


@dataclass(frozen=True)
class _Evaluation:
    """Candidates (c, L, k) evaluated: outlyingness (c, L); projections (c*L, n); per-row statistics (c*L,)."""

    outlyingness: np.ndarray
    projections: np.ndarray
    query_projections: np.ndarray
    medians: np.ndarray
    mads: np.ndarray


def _evaluate(
    candidates: np.ndarray, queries_whitened: np.ndarray, geometry: _Geometry, mad_convention: str
) -> _Evaluation:
    count, per_query, rank = candidates.shape
    projections = candidates.reshape(-1, rank).astype(_SEARCH_DTYPE) @ geometry.points_search_t
    query_projections = np.sum(candidates * queries_whitened[:, None, :], axis=-1).ravel()
    medians, mads = _median_and_mad(projections, mad_convention)
    outlyingness = _outlyingness(query_projections, medians, mads).reshape(count, per_query)
    return _Evaluation(outlyingness, projections, query_projections, medians, mads)


def _weighted_point_means(indices: np.ndarray, weights: np.ndarray, points: np.ndarray) -> np.ndarray:
    """sum_j weights[r, j] * points[indices[r, j]] for each row r: (r, q), (r, q), (n, k) -> (r, k).

    A sparse product, so that no (r, q, k) gather is materialised.
    """
    rows, per_row = indices.shape
    selection = scipy.sparse.csr_array(
        (weights.ravel().astype(points.dtype), (np.repeat(np.arange(rows), per_row), indices.ravel())),
        shape=(rows, points.shape[0]),
    )
    return np.asarray(selection @ points, dtype=np.float64)


def _smoothed_ascent(
    evaluation: _Evaluation,
    rows: np.ndarray,
    queries_whitened: np.ndarray,
    directions: np.ndarray,
    geometry: _Geometry,
) -> np.ndarray:
    """Unit tangent ascent directions (r, k) of O at the evaluated ``rows`` (r,); zeros where undefined.

    dO/du = [s (z - x_med) - O sigma_j (x_j - x_med)] / MAD, where s is the query's side of the
    median, x_med the median point, x_j the point whose |deviation| is the MAD and sigma_j its side.
    Both points are replaced by means over the q = 2 sqrt(n) points nearest to them (the one-point
    subgradient is noise in high dimension). ``queries_whitened`` and ``directions`` (r, k) belong to
    the rows.
    """
    n = geometry.points.shape[0]
    smoothing = max(1, min(int(2 * np.sqrt(n)), n // 2))
    medians = evaluation.medians[rows]
    mads = evaluation.mads[rows]
    outlyingness = evaluation.outlyingness.ravel()[rows]
    query_sides = np.sign(evaluation.query_projections[rows] - medians)
    deviations = evaluation.projections[rows] - medians[:, None]
    distances = np.abs(deviations)
    near_median = np.argpartition(distances, smoothing - 1, axis=1)[:, :smoothing]
    near_mad = np.argpartition(np.abs(distances - mads[:, None]), smoothing - 1, axis=1)[:, :smoothing]
    mad_sides = np.sign(np.take_along_axis(deviations, near_mad, axis=1)).astype(np.float64)

    median_points = _weighted_point_means(near_median, np.full(near_median.shape, 1.0 / smoothing), geometry.points_search)
    signed_mad_points = _weighted_point_means(near_mad, mad_sides / smoothing, geometry.points_search)
    mad_terms = signed_mad_points - mad_sides.mean(axis=1, keepdims=True) * median_points

    valid = (mads > 0) & np.isfinite(outlyingness) & (query_sides != 0)
    numerators = query_sides[:, None] * (queries_whitened - median_points)
    numerators -= np.where(valid, outlyingness, 0.0)[:, None] * mad_terms
    gradients = numerators / np.where(valid, mads, 1.0)[:, None]
    gradients -= np.sum(gradients * directions, axis=1, keepdims=True) * directions
    gradients[~valid] = 0.0
    return _normalize_rows(gradients)


def _search_chunk(
    geometry: _Geometry,
    keys: list[bytes],
    queries_whitened: np.ndarray,
    starts: np.ndarray,
    n_climbs: int,
    refinement_rounds: int,
    seed: int,
    mad_convention: str,
) -> np.ndarray:
    """Local climbs on the sphere from each query's best starts.

    Parameters
    ----------
    keys : list of c bytes
        The queries' hashes (they seed the random moves).
    queries_whitened : np.ndarray, shape (c, k)
    starts : np.ndarray, shape (c, S, k)
        Unit start directions; the ``n_climbs`` best of them (cycled if S < n_climbs) start the climbs.

    Returns
    -------
    np.ndarray, shape (c, k)
        The best direction found per query (unit, whitened coordinates).
    """
    count, n_starts, rank = starts.shape
    climbs = n_climbs if rank >= 2 else 1
    best = np.empty((count, climbs, rank))
    best_outlyingness = np.empty((count, climbs))
    ascent = np.zeros((count, climbs, rank))

    def accept(evaluation: _Evaluation, candidates: np.ndarray, chosen: np.ndarray, improved: np.ndarray) -> None:
        """Move the improved climbs to their chosen candidates (a column of the query's candidates)."""
        queries, climb_index = np.nonzero(improved)
        columns = chosen[queries, climb_index]
        best[queries, climb_index] = candidates[queries, columns]
        best_outlyingness[queries, climb_index] = evaluation.outlyingness[queries, columns]
        ascent[queries, climb_index] = _smoothed_ascent(
            evaluation,
            queries * candidates.shape[1] + columns,
            queries_whitened[queries],
            best[queries, climb_index],
            geometry,
        )

    evaluation = _evaluate(starts, queries_whitened, geometry, mad_convention)
    ranking = np.argsort(-evaluation.outlyingness, axis=1, kind="stable")
    accept(evaluation, starts, ranking[:, np.arange(climbs) % n_starts], np.ones((count, climbs), dtype=bool))
    if rank < 2:
        return best[:, 0]

    generators = [[_climb_generator(seed, key, climb) for climb in range(climbs)] for key in keys]
    step = np.full((count, climbs), _INITIAL_STEP)
    ladder = 0.5 ** np.arange(_LADDER_STEPS)
    first_column = np.arange(climbs)[None, :] * _MOVES_PER_CLIMB
    for _ in range(refinement_rounds):
        along_ascent = best[:, :, None, :] + (step[..., None] * ladder)[..., None] * ascent[:, :, None, :]
        noise = np.array([[g.standard_normal((_RANDOM_MOVES, rank)) for g in row] for row in generators])
        radii = np.array([[g.random(_RANDOM_MOVES) for g in row] for row in generators]) * step[..., None]
        noise -= np.sum(noise * best[:, :, None, :], axis=-1, keepdims=True) * best[:, :, None, :]
        random_moves = best[:, :, None, :] + radii[..., None] * _normalize_rows(noise)
        candidates = _normalize_rows(np.concatenate([along_ascent, random_moves], axis=2))
        candidates = candidates.reshape(count, climbs * _MOVES_PER_CLIMB, rank)
        evaluation = _evaluate(candidates, queries_whitened, geometry, mad_convention)
        scores = evaluation.outlyingness.reshape(count, climbs, _MOVES_PER_CLIMB)
        winners = np.argmax(scores, axis=2)
        improved = np.take_along_axis(scores, winners[..., None], axis=2)[..., 0] > best_outlyingness
        accept(evaluation, candidates, first_column + winners, improved)
        step = np.where(improved, step, step * _STEP_DECAY)
    return best[np.arange(count), np.argmax(best_outlyingness, axis=1)]


def _start_candidates(
    geometry: _Geometry,
    queries: np.ndarray,
    queries_whitened: np.ndarray,
    shared: tuple[np.ndarray, np.ndarray, np.ndarray],
    coordinate_median: np.ndarray,
    best_axes: np.ndarray,
    n_shared: int,
) -> np.ndarray:
    """Per-query unit start directions (c, n_shared + 4, k) in whitened coordinates.

    The ``n_shared`` shared directions with the largest outlyingness for the query, then z_w - med(X_w),
    z_w (Mahalanobis), z - med(X) and the query's best coordinate axis. A zero start is replaced by the
    first one.
    """
    directions, medians, mads = shared
    count, rank = queries_whitened.shape
    n_shared = max(1, min(n_shared, directions.shape[1]))
    top_shared = np.zeros((count, n_shared, rank))
    if directions.shape[1]:
        scores = _outlyingness(queries_whitened @ directions, medians, mads)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :n_shared]
        top_shared = np.moveaxis(directions[:, order], 0, -1)
    else:
        top_shared[:, 0, 0] = 1.0
    # A direction v acting on scaled coordinates acts on whitened points as unwhiten @ v, and an
    # original direction e acts on scaled coordinates as scale * e.
    offsets = (queries[:, geometry.columns] - coordinate_median[geometry.columns]) * geometry.scale
    axis_vectors = np.zeros((count, queries.shape[1]))
    axis_vectors[np.arange(count), best_axes] = 1.0
    data_driven = np.stack(
        [
            queries_whitened - np.median(geometry.points, axis=0),
            queries_whitened,
            offsets @ geometry.unwhiten.T,
            (axis_vectors[:, geometry.columns] * geometry.scale) @ geometry.unwhiten.T,
        ],
        axis=1,
    )
    starts = _normalize_rows(np.concatenate([top_shared, data_driven], axis=1))
    empty = np.sum(starts * starts, axis=-1) == 0
    starts[empty] = np.broadcast_to(starts[:, :1, :], starts.shape)[empty]
    return starts


def _search(
    geometry: _Geometry,
    reference: np.ndarray,
    queries: np.ndarray,
    keys: list[bytes],
    best_axes: np.ndarray,
    *,
    n_directions: int,
    refinement_rounds: int,
    n_climbs: int,
    seed: int,
    mad_convention: str,
    chunk_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Search every query (c, d); returns float64 outlyingness (c,) and unit original directions (c, d)."""
    shared = _shared_directions(geometry, n_directions, seed, mad_convention, chunk_size)
    coordinate_median = np.median(reference, axis=0)
    queries_per_chunk = max(1, chunk_size // (n_climbs * _MOVES_PER_CLIMB))
    outlyingness = np.empty(queries.shape[0])
    directions = np.empty(queries.shape)
    for start in range(0, queries.shape[0], queries_per_chunk):
        chunk = slice(start, start + queries_per_chunk)
        whitened = _scaled(geometry, queries[chunk]) @ geometry.whiten
        starts = _start_candidates(
            geometry, queries[chunk], whitened, shared, coordinate_median, best_axes[chunk], n_climbs
        )
        found = _search_chunk(
            geometry, keys[chunk], whitened, starts, n_climbs, refinement_rounds, seed, mad_convention
        )
        # The reported value is recomputed in float64 along the original direction.
        directions[chunk] = _whitened_to_original(geometry, found, queries.shape[1])
        outlyingness[chunk] = _final_outlyingness(reference, queries[chunk], directions[chunk], mad_convention)
    return outlyingness, directions


def _final_outlyingness(
    reference: np.ndarray, queries: np.ndarray, directions: np.ndarray, mad_convention: str
) -> np.ndarray:
    """Float64 outlyingness (r,) of each query (r, d) along its unit direction (r, d): the reported value.

    The query's and the reference's projections come from one row-wise sum over [reference; query],
    so equal points get bitwise-equal projections on any machine. (A BLAS product rounds a row
    according to its position and the kernel, and a separate dot product for the query rounds
    differently again: a query equal to a majority of identical reference points then sat an ulp off
    their median, with a MAD of 0 or of an ulp, and got O = inf or O ~ 1 instead of 0/0 = 0.)
    """
    values = np.empty(queries.shape[0])
    stacked = np.empty((reference.shape[0] + 1, reference.shape[1]))
    stacked[:-1] = reference
    for row, (query, direction) in enumerate(zip(queries, directions)):
        stacked[-1] = query
        projections = np.sum(stacked * direction, axis=1)
        median, mad = _median_and_mad(projections[:-1], mad_convention)
        values[row] = _outlyingness(projections[-1], median, mad)
    return values


# --------------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------------


def projection_depth(
    queries: np.ndarray,
    reference: np.ndarray,
    *,
    n_directions: int = 1000,
    refinement_rounds: int = 30,
    n_climbs: int = 4,
    seed: int = 0,
    mad_convention: str = "average",
    standardize: bool = True,
    chunk_size: int = 2048,
) -> ProjectionDepthResult:
    """Projection depth D(z | X) of each query with respect to the reference sample.

    Parameters
    ----------
    queries : np.ndarray, shape (m, d)
        Points to score (m may be 0). Finite values.
    reference : np.ndarray, shape (n, d)
        The sample X, n >= 2. Finite values.
    n_directions : int, default 1000
        Seeded Gaussian directions in whitened coordinates, shared by all queries.
    refinement_rounds : int, default 30
        Rounds of local refinement; each evaluates 4 directions per climb.
    n_climbs : int, default 4
        Independent local climbs per query, started from its best start directions. More climbs
        mainly help in low dimension, where the surface has many narrow local maxima: on Gaussian data
        with d = 5-10, n = 501, the worst of 50 points is within about 5% of the best of four
        data-depth solvers (4 x 1000 directions) with 4 climbs, and within about 2.3% with 16.
    seed : int, default 0
        Seed of the shared directions and (with each query's bytes) of the random moves.
    mad_convention : {"average", "upper"}, default "average"
        MAD of an even number of values: mean of the two middle ones (scipy) or the upper (data-depth).
    standardize : bool, default True
        Search in whitened coordinates (affine invariant). With False the search runs in the raw
        coordinates (rotated onto the reference's span), which is not affine invariant.
    chunk_size : int, default 2048
        At most this many directions are projected at once; memory is about 3 x chunk_size x n
        float32 values.

    Returns
    -------
    ProjectionDepthResult
        ``depth`` (m,), ``outlyingness`` (m,), ``direction`` (m, d), ``exact`` (m,), the settings,
        and ``degenerate_reference``. Where ``exact`` is False the depth is an upper bound.

    Notes
    -----
    Cost: O((n_directions + m * n_climbs * 4 * (refinement_rounds + 2)) * n * d) plus O(n d^2) for the
    whitening. For a reference with n <= 2 * rank or rank < d (see ``is_degenerate_reference``) the
    exact depth is 0 for almost every query; those zeros are proven and returned with ``exact`` set,
    and only queries lying exactly on the relevant affine hulls are searched, where the upper bound
    can then be far above the (zero or near-zero) exact value.
    """
    _check_settings(n_directions, refinement_rounds, n_climbs, seed, chunk_size)
    _check_mad_convention(mad_convention)
    reference_matrix = _check_reference(reference)
    query_matrix = _as_matrix(queries, "queries")
    if query_matrix.shape[1] != reference_matrix.shape[1]:
        raise InputError(
            f"queries have {query_matrix.shape[1]} dimensions but the reference has {reference_matrix.shape[1]}"
        )
    # Work in a canonical order (sorted by the hash of each query's bytes), so that the batched
    # products see the same layout whatever the order of the queries.
    keys = _query_keys(query_matrix)
    order = np.argsort(np.array(keys, dtype="S16"), kind="stable") if keys else np.zeros(0, dtype=np.intp)
    ordered = query_matrix[order]
    ordered_keys = [keys[index] for index in order]
    m, d = ordered.shape

    outlyingness, best_axes, axis_mad = _axis_outlyingness(ordered, reference_matrix, mad_convention)
    direction = np.zeros((m, d))
    direction[np.arange(m), best_axes] = 1.0
    geometry = _fit_geometry(reference_matrix, standardize)
    # With rank 0 the reference is one point repeated: the axes decide (O is 0 or inf).
    exact = np.isinf(outlyingness) | (d == 1) | (geometry.rank == 0)
    pending = np.flatnonzero(~exact)

    residuals, off_hull = _null_space_residuals(geometry, _scaled(geometry, ordered[pending]))
    witnesses = _scaled_to_original(geometry, residuals[off_hull], d)
    proven = _certified_zero(ordered[pending[off_hull]], reference_matrix, witnesses)
    outside = pending[off_hull][proven]
    outlyingness[outside], exact[outside] = np.inf, True
    direction[outside] = witnesses[proven]
    pending = pending[~exact[pending]]

    if geometry.rank == 1:
        # On a line x = a + t l every direction not orthogonal to l (some axis is not) sees the same
        # sample of t up to an affine map, so the best axis value is exact.
        exact[pending] = True
        pending = pending[:0]

    if reference_matrix.shape[0] // 2 + 1 <= geometry.rank:
        whitened = _scaled(geometry, ordered[pending]) @ geometry.whiten
        candidates, witnesses = [], []
        for slot, index in enumerate(pending):
            residual = _majority_hyperplane_residual(geometry, whitened[slot])
            if residual is not None:
                candidates.append(index)
                witnesses.append(_whitened_to_original(geometry, residual[None, :], d)[0])
        if candidates:
            candidates, witnesses = np.array(candidates), np.array(witnesses)
            proven = _certified_zero(ordered[candidates], reference_matrix, witnesses)
            outlyingness[candidates[proven]], exact[candidates[proven]] = np.inf, True
            direction[candidates[proven]] = witnesses[proven]
        pending = pending[~exact[pending]]

    if pending.size:
        found, found_directions = _search(
            geometry,
            reference_matrix,
            ordered[pending],
            [ordered_keys[index] for index in pending],
            best_axes[pending],
            n_directions=n_directions,
            refinement_rounds=refinement_rounds,
            n_climbs=n_climbs,
            seed=seed,
            mad_convention=mad_convention,
            chunk_size=chunk_size,
        )
        # A searched MAD of exactly 0 counts only with a certified margin; otherwise the direction
        # is discarded (the query keeps its axis value), since rounding decided it.
        infinite = np.flatnonzero(np.isinf(found))
        doubtful = ~_certified_zero(ordered[pending[infinite]], reference_matrix, found_directions[infinite])
        found[infinite[doubtful]] = -np.inf
        better = found > outlyingness[pending]
        outlyingness[pending[better]] = found[better]
        direction[pending[better]] = found_directions[better]
        exact[pending] |= np.isinf(outlyingness[pending])

    restore = np.argsort(order)
    arrays = {
        "depth": _depth_from_outlyingness(outlyingness)[restore],
        "outlyingness": outlyingness[restore],
        "direction": direction[restore],
        "exact": exact[restore],
    }
    for array in arrays.values():
        array.setflags(write=False)
    return ProjectionDepthResult(
        **arrays,
        degenerate_reference=_reference_is_degenerate(reference_matrix, geometry, axis_mad),
        n_directions=int(n_directions),
        refinement_rounds=int(refinement_rounds),
        n_climbs=int(n_climbs),
        seed=int(seed),
        mad_convention=mad_convention,
        standardize=bool(standardize),
    )
