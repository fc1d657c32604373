"""Time flint_analysis.projection_depth against data-depth on a full FashionMNIST class.

Reference: all 6,000 training images of one class, flattened pixels in [0, 1] (n = 6000, d = 784).
Queries: test images of that class plus test images of the other classes (default 100 + 30).

Two variants are run on the same images, in one process:

- ``raw``: the pixels as they are. Most pixels have MAD = 0 in a class, so the exact depth of almost
  every query is 0; projection_depth proves those zeros (``exact``) without searching, while
  data-depth's search returns positive values.
- ``dequantized``: uniform noise in [0, 1/255) added to every pixel (reference and queries, seeded),
  the usual dequantisation of 8-bit images. Every MAD is then positive, so this variant times the
  search itself.

data-depth (``projection(..., solver="neldermead", NRandom=1000)``) costs about n * (20 ns + 1.1 ns * d)
per direction and point, i.e. seconds per query here, so by default it runs on 10 of the queries and
its time for all of them is extrapolated linearly (it treats queries independently). The depth
comparison uses that subset.

Usage: python benchmarks/projection_depth.py [--class-index 0] [--dd-queries 10] [--variants raw dequantized]
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flint_analysis.projection_depth import projection_depth  # noqa: E402

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
VARIANTS = ("raw", "dequantized")


def read_idx_gz(path: Path, header_bytes: int) -> np.ndarray:
    with gzip.open(path, "rb") as stream:
        return np.frombuffer(stream.read(), dtype=np.uint8, offset=header_bytes)


def load_fashion_mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Flattened uint8 images (N, 784) and labels (N,) of the train and test splits, and the loader used."""
    try:
        from flint_analysis.datasets import load_dataset

        bundle = load_dataset("fashion-mnist")
        arrays = [
            bundle.train.images.reshape(len(bundle.train), -1).numpy(),
            bundle.train.labels.numpy(),
            bundle.test.images.reshape(len(bundle.test), -1).numpy(),
            bundle.test.labels.numpy(),
        ]
        return (*arrays, "flint_analysis.datasets.load_dataset('fashion-mnist')")  # type: ignore[return-value]
    except ImportError:
        pass
    arrays = []
    for split in ("train", "t10k"):
        images = read_idx_gz(DEBIAN_FASHION_MNIST / f"{split}-images-idx3-ubyte.gz", 16).reshape(-1, 784)
        arrays += [images, read_idx_gz(DEBIAN_FASHION_MNIST / f"{split}-labels-idx1-ubyte.gz", 8)]
    return (*arrays, f"gzip IDX files in {DEBIAN_FASHION_MNIST}")  # type: ignore[return-value]


def select_queries(test_images: np.ndarray, test_labels: np.ndarray, class_index: int, n_same: int, n_other: int) -> np.ndarray:
    same = np.flatnonzero(test_labels == class_index)[:n_same]
    other = np.flatnonzero(test_labels != class_index)[:n_other]
    return test_images[np.concatenate([same, other])]


def outlyingness_from_depth(depth: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(depth > 0, 1.0 / depth - 1.0, np.inf)


def run_variant(
    name: str, reference: np.ndarray, queries: np.ndarray, dd_indices: np.ndarray, seed: int
) -> None:
    from depth.model.multivariate import projection

    if name == "dequantized":
        rng = np.random.default_rng(seed)
        reference = reference + rng.uniform(0.0, 1.0 / 255.0, reference.shape)
        queries = queries + rng.uniform(0.0, 1.0 / 255.0, queries.shape)
    m = queries.shape[0]

    start = time.perf_counter()
    ours = projection_depth(queries, reference)
    ours_seconds = time.perf_counter() - start

    start = time.perf_counter()
    dd_depth = np.asarray(projection(queries[dd_indices], reference, solver="neldermead", NRandom=1000), dtype=float)
    dd_seconds = time.perf_counter() - start
    dd_all_seconds = dd_seconds / dd_indices.size * m

    ours_subset = ours.depth[dd_indices]
    ratio = outlyingness_from_depth(ours_subset) / outlyingness_from_depth(dd_depth)
    print(f"\n== variant: {name} ==")
    print(
        f"projection_depth: {ours_seconds:8.2f} s for {m} queries ({ours_seconds / m:.3f} s/query); "
        f"{int(ours.exact.sum())} exact ({int((ours.depth == 0).sum())} proven zeros), "
        f"degenerate_reference={ours.degenerate_reference}"
    )
    print(
        f"data-depth NM   : {dd_seconds:8.2f} s for {dd_indices.size} queries ({dd_seconds / dd_indices.size:.3f} s/query); "
        f"extrapolated to {m} queries: {dd_all_seconds:.1f} s"
    )
    print(f"time ratio data-depth / projection_depth (for {m} queries): {dd_all_seconds / ours_seconds:.1f}x")
    print(f"depth, mean over all {m}: ours {ours.depth.mean():.6f}")
    print(
        f"depth on the {dd_indices.size}-query subset: mean ours {ours_subset.mean():.6f}, data-depth {dd_depth.mean():.6f}; "
        f"ours <= data-depth on {np.mean(ours_subset <= dd_depth):.0%} of points; "
        f"median outlyingness ratio ours/data-depth {np.median(ratio):.3g} (min {ratio.min():.3g}, max {ratio.max():.3g})"
    )
    for index, mine, theirs in zip(dd_indices, ours_subset, dd_depth):
        print(f"  query {index:4d}: ours {mine:.6f}{' (exact)' if ours.exact[index] else ''}   data-depth {theirs:.6f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--class-index", type=int, default=0, help="FashionMNIST class of the reference (default 0, T-shirt/top)")
    parser.add_argument("--same-class-queries", type=int, default=100, help="test images of the class (default 100)")
    parser.add_argument("--other-class-queries", type=int, default=30, help="test images of other classes (default 30)")
    parser.add_argument("--dd-queries", type=int, default=10, help="queries given to data-depth, evenly spread (default 10)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="default: both")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dequantisation noise (default 0)")
    args = parser.parse_args(argv)

    train_images, train_labels, test_images, test_labels, loader = load_fashion_mnist()
    reference = train_images[train_labels == args.class_index].astype(np.float64) / 255.0
    queries = select_queries(test_images, test_labels, args.class_index, args.same_class_queries, args.other_class_queries)
    queries = queries.astype(np.float64) / 255.0
    dd_indices = np.unique(np.linspace(0, queries.shape[0] - 1, min(args.dd_queries, queries.shape[0])).round().astype(int))

    print(f"FashionMNIST class {args.class_index} via {loader}")
    print(
        f"n = {reference.shape[0]} reference images, d = {reference.shape[1]}, m = {queries.shape[0]} queries "
        f"({args.same_class_queries} same class + {args.other_class_queries} other classes)"
    )
    print(
        "projection_depth defaults: n_directions=1000, refinement_rounds=30, n_climbs=4, seed=0, "
        "mad_convention='average', standardize=True"
    )
    print(f"data-depth: projection(solver='neldermead', NRandom=1000) on queries {dd_indices.tolist()}")
    print(f"single process, {os.cpu_count()} CPUs, numpy {np.__version__}")
    for variant in args.variants:
        run_variant(variant, reference, queries, dd_indices, args.seed)


if __name__ == "__main__":
    main()
