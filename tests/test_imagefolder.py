"""The ImageFolder loader (in memory and streamed), its normalisation statistics and the IDX → ImageFolder export.

Every data set here is a tiny tree of real PNG/JPEG files (3 classes × 6 images of 8×8 to 12×12 pixels); the
expected pixels and statistics are computed independently from the files with Pillow and NumPy.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flint_analysis.checkpoint import Checkpoint, load_checkpoint
from flint_analysis.cli import main as analyze_main
from flint_analysis.datasets import (
    ImageDataset,
    StreamingImageDataset,
    channel_statistics,
    data_fingerprint,
    iterate_uint8_batches,
    load_dataset,
    load_dataset_for_spec,
    load_imagefolder,
    parse_dataset_name,
)
from flint_analysis.errors import DatasetError
from flint_analysis.models import build_model, resolve_architecture_kwargs
from flint_analysis.training.cli import main as train_main
from flint_analysis.training.config import TrainingConfig
from flint_analysis.training.trainer import train
from tests.conftest import write_idx

CLASSES = ("cat", "dog", "owl")
ROOT = Path(__file__).resolve().parents[1]


def make_tree(root: Path, mode: str = "L", size: tuple[int, int] = (8, 8), per_class: int = 6, layout: str = "split",
              suffix: str = ".png", seed: int = 0) -> dict[str, np.ndarray]:
    """Write ``per_class`` random images per class (for ``train-test``: 4 in train/, 2 in test/); returns path → pixels."""
    rng = np.random.default_rng(seed)
    written = {}
    for k, name in enumerate(CLASSES):
        for i in range(per_class):
            split = "" if layout == "split" else ("train/" if i < per_class * 2 // 3 else "test/")
            relative = f"{split}{name}/{i:02d}{suffix}"
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            pixels = rng.integers(0, 256, shape, dtype=np.uint8)
            pixels[..., 0, 0] = 40 * k  # class-dependent corner, so classes differ
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels, mode).save(path, quality=95) if suffix == ".jpg" else Image.fromarray(pixels, mode).save(path)
            written[relative] = pixels
    return written


def as_chw(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1).copy())


def test_dataset_names_and_the_imagefolder_form():
    assert parse_dataset_name("mnist") == ("mnist", None)
    assert parse_dataset_name("imagefolder:/data/a:b") == ("imagefolder", "/data/a:b")
    for bad, expected in (("imagefolder", "imagefolder:PATH"), ("imagefolder:", "imagefolder:PATH"), ("cifar", "known: mnist")):
        with pytest.raises(DatasetError, match=expected) as info:
            parse_dataset_name(bad)
        assert "\n" not in str(info.value)


def test_class_folders_are_split_by_a_seeded_stratified_split_in_file_order(tmp_path):
    from sklearn.model_selection import train_test_split

    written = make_tree(tmp_path)
    bundle = load_dataset("imagefolder", path=tmp_path, seed=3, test_fraction=0.5)
    spec = bundle.spec
    assert spec.name == "imagefolder" and spec.class_names == CLASSES and spec.input_shape == (1, 8, 8)
    assert spec.split_seed == 3 and spec.value_range == (0.0, 1.0)
    assert spec.options == {"path": str(tmp_path.resolve()), "image_size": 8, "channels": 1, "layout": "split",
                            "test_fraction": 0.5, "streaming": False}
    files = sorted(written)  # the ImageFolder order: class folders sorted, then files sorted
    labels = [CLASSES.index(name.split("/")[0]) for name in files]
    train_index, test_index = train_test_split(np.arange(18), test_size=0.5, stratify=labels, random_state=3)
    for split, index in (("train", np.sort(train_index)), ("test", np.sort(test_index))):
        data = bundle.split(split)
        assert isinstance(data, ImageDataset) and data.labels.tolist() == [labels[i] for i in index]
        assert torch.equal(data.images, torch.stack([as_chw(written[files[i]]) for i in index]))
    assert torch.bincount(bundle.test.labels).tolist() == [3, 3, 3]
    other = load_dataset("imagefolder", path=tmp_path, seed=4, test_fraction=0.5)
    assert not torch.equal(other.test.images, bundle.test.images)
    with pytest.raises(DatasetError, match="cannot split the 18 images.*change --test-fraction"):
        load_dataset("imagefolder", path=tmp_path, test_fraction=0.05)  # fewer test images than classes


def test_train_and_test_folders_rgb_auto_channels_and_conversions(tmp_path):
    written = make_tree(tmp_path / "rgb", mode="RGB", layout="train-test")
    bundle = load_imagefolder(path=tmp_path / "rgb", normalize=False)
    assert bundle.spec.input_shape == (3, 8, 8) and bundle.spec.split_seed is None and bundle.spec.normalization is None
    assert bundle.spec.options["layout"] == "train-test" and "test_fraction" not in bundle.spec.options
    assert (len(bundle.train), len(bundle.test)) == (12, 6)
    with pytest.raises(DatasetError, match="train/ and test/ folders, which are the splits; --test-fraction does not apply"):
        load_imagefolder(path=tmp_path / "rgb", test_fraction=0.3)
    x, y = bundle.test[5]
    assert torch.equal(x, as_chw(written["test/owl/05.png"]).float() / 255) and y == 2
    gray = load_imagefolder(path=tmp_path / "rgb", channels=1, normalize=False)  # colour → luma, as Pillow's convert("L")
    luma = np.asarray(Image.open(tmp_path / "rgb" / "train/dog/00.png").convert("L"))
    assert torch.equal(gray.train.images[4, 0], torch.from_numpy(luma.copy()))
    deep = tmp_path / "deep"
    make_tree(deep, mode="L")
    sixteen = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000
    Image.fromarray(sixteen).save(deep / "cat" / "16bit.png")  # a 16-bit gray PNG: still gray, scaled to 8 bits
    deep_bundle = load_imagefolder(path=deep, normalize=False, test_fraction=0.25, stream=True)
    assert deep_bundle.spec.input_shape == (1, 8, 8)
    position = deep_bundle.train.files.index("cat/16bit.png")
    assert torch.equal(deep_bundle.train.batch([position])[0][0, 0].mul(255).round(), torch.from_numpy(np.round(sixteen / 257.0)).float())
    make_tree(tmp_path / "gray", mode="L", layout="train-test")
    repeated = load_imagefolder(path=tmp_path / "gray", channels=3, normalize=False)  # gray → the value in R, G and B
    assert repeated.spec.input_shape == (3, 8, 8)
    assert torch.equal(repeated.train.images, load_imagefolder(path=tmp_path / "gray", normalize=False).train.images.repeat(1, 3, 1, 1))


def test_sizes_are_resized_shorter_side_then_centre_cropped(tmp_path):
    from torchvision import transforms

    make_tree(tmp_path, mode="RGB", size=(12, 10), suffix=".jpg")
    with pytest.raises(DatasetError, match="12×10, not square; give --image-size S"):
        load_imagefolder(path=tmp_path)
    (tmp_path / "cat" / "big.jpg").write_bytes((tmp_path / "cat" / "00.jpg").read_bytes())
    Image.new("RGB", (16, 16)).save(tmp_path / "dog" / "other.png")
    with pytest.raises(DatasetError, match=r"several sizes \(dog/other.png is 16×16"):
        load_imagefolder(path=tmp_path)
    bundle = load_imagefolder(path=tmp_path, image_size=8, normalize=False, test_fraction=0.25)
    assert bundle.spec.input_shape == (3, 8, 8) and bundle.spec.options["image_size"] == 8
    reference = transforms.Compose([transforms.Resize(8), transforms.CenterCrop(8), transforms.PILToTensor()])
    stream = load_imagefolder(path=tmp_path, image_size=8, normalize=False, test_fraction=0.25, stream=True)
    for position in (0, 3):
        with Image.open(tmp_path / stream.train.files[position]) as image:
            expected = reference(image.convert("RGB"))
        assert torch.equal(bundle.train.images[position], expected)


def test_normalisation_statistics_are_the_training_splits_per_channel_mean_and_std(tmp_path):
    written = make_tree(tmp_path, mode="RGB", layout="train-test")
    bundle = load_imagefolder(path=tmp_path)
    pixels = np.stack([written[name] for name in written if name.startswith("train/")]).astype(np.float64) / 255  # (N, H, W, 3)
    np.testing.assert_allclose(bundle.spec.normalization["mean"], pixels.mean(axis=(0, 1, 2)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(bundle.spec.normalization["std"], pixels.std(axis=(0, 1, 2)), rtol=0, atol=1e-12)
    given = load_imagefolder(path=tmp_path, mean=[0.5], std=[0.25, 0.5, 1.0])
    assert given.spec.normalization == {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.5, 1.0]}
    assert load_imagefolder(path=tmp_path, normalize=False).spec.normalization is None
    for options, message in (({"mean": [0.5, 0.5]}, "both --mean and --std"), ({"mean": [0.1, 0.2], "std": [1, 1]}, "2 values for 3"),
                             ({"mean": [0.1], "std": [0.0]}, "finite numbers > 0"), ({"normalize": False, "mean": [0.1], "std": [1]}, "not both")):
        with pytest.raises(DatasetError, match=message):
            load_imagefolder(path=tmp_path, **options)
    constant = torch.full((4, 1, 2, 2), 7, dtype=torch.uint8)
    assert channel_statistics(ImageDataset(constant, torch.zeros(4))) == {"mean": [7 / 255], "std": [1.0]}


def test_the_streaming_path_serves_the_same_data_as_memory(tmp_path):
    make_tree(tmp_path, mode="L", size=(12, 12), per_class=8)
    memory = load_imagefolder(path=tmp_path)
    stream = load_imagefolder(path=tmp_path, in_memory_limit=100)  # over the limit: streamed
    assert isinstance(stream.train, StreamingImageDataset) and stream.spec.options["streaming"] is True
    assert not hasattr(stream.train, "images")
    assert stream.spec.normalization == memory.spec.normalization
    for split in ("train", "test"):
        streamed, held = stream.split(split), memory.split(split)
        assert len(streamed) == len(held) and torch.equal(streamed.labels, held.labels)
        for indices in ([2, 0, 4], None, []):
            assert all(torch.equal(a, b) for a, b in zip(streamed.batch(indices), held.batch(indices)))
        x, y = streamed[1]
        assert torch.equal(x, held[1][0]) and y == held[1][1]
    batches = [torch.tensor([3, 1]), torch.tensor([0, 4, 2])]
    by_workers = list(iterate_uint8_batches(stream.train, batches, workers=2))  # decoded by two worker processes
    assert all(torch.equal(a[0], memory.train.images[b]) and torch.equal(a[1], memory.train.labels[b]) for a, b in zip(by_workers, batches))
    fingerprint = data_fingerprint(stream)
    assert fingerprint != data_fingerprint(memory) and fingerprint == data_fingerprint(load_imagefolder(path=tmp_path, stream=True))
    (tmp_path / "cat" / "00.png").write_bytes((tmp_path / "cat" / "00.png").read_bytes() + b"\0")  # one byte longer
    assert data_fingerprint(stream) != fingerprint


def test_one_epoch_on_the_streaming_path_gives_the_same_weights_as_in_memory(tmp_path):
    make_tree(tmp_path, mode="L", size=(12, 12), per_class=8)
    config = TrainingConfig(epochs=1, batch_size=5, learning_rate=2e-3, eta=0.02, interpretability_start_epoch=0,
                            entropy_start_epoch=0)
    trained = []
    for options in ({}, {"stream": True, "workers": 2}):
        bundle = load_imagefolder(path=tmp_path, **options)
        kwargs = resolve_architecture_kwargs("lenet", {"num_attributes": 4, "num_classes": 3, "input_size": 12})
        torch.manual_seed(0)
        checkpoint = Checkpoint(build_model("lenet", kwargs), "lenet", kwargs, bundle.spec)
        train(checkpoint, bundle, config, tmp_path / f"run{len(trained)}.pt", 0, torch.device("cpu"), progress=False, log=lambda s: None)
        trained.append(checkpoint)
    memory, streamed = (c.model.state_dict() for c in trained)
    assert memory.keys() == streamed.keys() and all(torch.equal(memory[k], streamed[k]) for k in memory)
    assert trained[0].history[0].test_accuracy_f == trained[1].history[0].test_accuracy_f


def test_damaged_images_and_bad_layouts_are_one_line_errors(tmp_path, monkeypatch):
    make_tree(tmp_path / "data")
    (tmp_path / "data" / "dog" / "03.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    for options in ({}, {"stream": True, "image_size": 8, "channels": 1}):  # found by the header pass / when decoded
        bundle_or_error = None
        with pytest.raises(DatasetError, match=r"cannot read image .*dog/03.png: .*replace or remove the damaged file") as info:
            bundle_or_error = load_imagefolder(path=tmp_path / "data", **options)
            bundle_or_error.train.batch(None), bundle_or_error.test.batch(None)
        assert "\n" not in str(info.value)
    good = tmp_path / "data" / "cat" / "01.png"
    (tmp_path / "data" / "dog" / "03.png").write_bytes(good.read_bytes()[:-40])  # a valid header, its data cut short
    with pytest.raises(DatasetError, match=r"cannot read image .*dog/03.png: .*truncated"):
        load_imagefolder(path=tmp_path / "data")  # the header pass passes, decoding fails
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20)  # Pillow's decompression-bomb guard: warns over it, fails over twice it
    with pytest.raises(DatasetError, match=r"more pixels than Pillow decodes safely \(Image.MAX_IMAGE_PIXELS = 20\)"):
        load_imagefolder(path=tmp_path / "data")
    monkeypatch.undo()
    stream = load_imagefolder(path=tmp_path / "data", stream=True, image_size=8, channels=1, normalize=False, workers=2)
    with pytest.raises(DatasetError, match="dog/03.png") as info:  # raised in a worker process, one line in this one
        list(iterate_uint8_batches(stream.train, [torch.arange(len(stream.train))]))
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)

    layout = tmp_path / "layout"
    make_tree(layout, layout="train-test")
    (layout / "test" / "bat").mkdir()
    Image.new("L", (8, 8)).save(layout / "test" / "bat" / "0.png")
    with pytest.raises(DatasetError, match=r"test has class folder\(s\) bat that train/ lacks"):
        load_imagefolder(path=layout)
    (layout / "test" / "bat" / "0.png").unlink()
    (layout / "test" / "bat").rmdir()
    (layout / "test" / "owl" / "04.png").rename(layout / "test" / "owl" / "04.txt")
    (layout / "test" / "owl" / "05.png").unlink()
    with pytest.raises(DatasetError, match="no valid file for the classes owl"):
        load_imagefolder(path=layout)
    for name in ("cat", "dog", "owl"):
        for path in sorted((layout / "test" / name).iterdir()):
            path.unlink()
        (layout / "test" / name).rmdir()
    with pytest.raises(DatasetError, match="has no class sub-folders"):
        load_imagefolder(path=layout)
    (layout / "test").rmdir()
    with pytest.raises(DatasetError, match="has a train/ folder but no test/ folder"):
        load_imagefolder(path=layout)
    with pytest.raises(DatasetError, match="does not exist.*--data-root"):
        load_imagefolder(path=tmp_path / "missing")
    with pytest.raises(DatasetError, match="cannot be downloaded"):
        load_imagefolder(path=layout, download=True)


@pytest.mark.parametrize("stream", [False, True])
def test_the_spec_round_trips_through_a_checkpoint_and_moved_data(tmp_path, stream):
    make_tree(tmp_path / "data", mode="RGB", layout="train-test")
    bundle = load_imagefolder(path=tmp_path / "data", image_size=8, stream=stream)
    spec = replace(bundle.spec, fingerprint=data_fingerprint(bundle))
    kwargs = resolve_architecture_kwargs("lenet", {"num_attributes": 4, "num_classes": 3, "in_channels": 3, "input_size": 8})
    Checkpoint(build_model("lenet", kwargs), "lenet", kwargs, spec).save(tmp_path / "ckpt.pt")
    loaded = load_checkpoint(tmp_path / "ckpt.pt").dataset
    assert loaded == spec
    again = load_dataset_for_spec(loaded)
    assert again.spec.normalization == spec.normalization and type(again.train) is type(bundle.train)
    assert torch.equal(again.test.batch(None)[0], bundle.test.batch(None)[0])
    (tmp_path / "data").rename(tmp_path / "moved")
    with pytest.raises(DatasetError, match="does not exist.*pass its new place as --data-root"):
        load_dataset_for_spec(loaded)
    moved = load_dataset_for_spec(loaded, data_root=tmp_path / "moved")
    assert torch.equal(moved.train.labels, bundle.train.labels)
    for key, value in (("image_size", "8"), ("channels", 2), ("streaming", "yes"), ("path", 3)):
        damaged = replace(loaded, options={**loaded.options, key: value})
        with pytest.raises(DatasetError, match=f"imagefolder option {key} .*the checkpoint is damaged"):
            load_dataset_for_spec(damaged, data_root=tmp_path / "moved")


def test_flint_train_and_flint_analyze_on_an_imagefolder(tmp_path, capsys):
    make_tree(tmp_path / "data", size=(12, 12), layout="train-test")
    folder = f"imagefolder:{tmp_path / 'data'}"
    common = ["--architecture", "lenet", "--num-attributes", "4", "--epochs", "1", "--batch-size", "6", "--quiet",
              "--device", "cpu"]
    assert train_main(["--dataset", folder, "--stream", "--workers", "1", "-o", str(tmp_path / "ckpt.pt"), *common]) == 0
    checkpoint = load_checkpoint(tmp_path / "ckpt.pt")
    spec = checkpoint.dataset
    assert spec.name == "imagefolder" and spec.options["streaming"] and spec.fingerprint is not None
    for key in ("mean", "std"):  # the model normalises its [0, 1] inputs (float32 buffers)
        np.testing.assert_allclose(checkpoint.model.input_normalization[key], spec.normalization[key], rtol=1e-6)
    assert train_main(["--resume", str(tmp_path / "ckpt.pt"), "--epochs", "2", "--quiet", "--device", "cpu"]) == 0
    assert len(load_checkpoint(tmp_path / "ckpt.pt").history) == 2
    capsys.readouterr()
    run = ["--quiet", "--device", "cpu", "--workers", "1"]
    assert analyze_main(["metrics", str(tmp_path / "ckpt.pt"), "-o", str(tmp_path / "metrics"), "--ks", "1", "2", *run]) == 0
    assert analyze_main(["local", str(tmp_path / "ckpt.pt"), "--index", "0", "-o", str(tmp_path / "local"), "--am-pi-steps", "2",
                         *run]) == 0
    assert (tmp_path / "metrics" / "metrics.json").is_file() and (tmp_path / "local" / "local.json").is_file()
    for argv, message in (
        (["--dataset", "imagefolder:" + str(tmp_path / "data"), "--data-root", str(tmp_path)], "--data-root does not apply"),
        (["--dataset", "mnist5k", "--image-size", "28"], r"--image-size does not apply to --dataset mnist5k \(only to imagefolder\)"),
        (["--dataset", "mnist5k", "--workers", "2"], "--workers does not apply to --dataset mnist5k"),
        (["--dataset", "cifar"], "unknown dataset 'cifar'; known: .*or imagefolder:PATH"),
    ):
        try:
            status = train_main([*argv, "-o", str(tmp_path / "other.pt"), *common])
        except SystemExit as exit_:  # argparse's errors
            status = exit_.code
        assert status == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and re.search(message, error), error


def _export_module():
    spec = importlib.util.spec_from_file_location("export_imagefolder", ROOT / "scripts" / "export_imagefolder.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_fashion_idx(folder: Path, sizes=(40, 20)) -> dict:
    """Tiny FashionMNIST IDX files whose splits hold every class (labels: a shuffled 0-9 cycle)."""
    rng = np.random.default_rng(5)
    arrays = {}
    for split, prefix, size in (("train", "train", sizes[0]), ("test", "t10k", sizes[1])):
        images = rng.integers(0, 256, (size, 28, 28), dtype=np.uint8)
        labels = rng.permutation(np.arange(size) % 10).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)
        arrays[split] = (images, labels)
    return arrays


def test_the_export_script_writes_the_idx_pixels_as_an_imagefolder(tmp_path, capsys):
    export = _export_module()
    arrays = write_fashion_idx(tmp_path / "idx" / "FashionMNIST" / "raw")
    out = tmp_path / "fashion"
    assert export.main([str(out), "--data-root", str(tmp_path / "idx")]) == 0
    folders = sorted(p.name for p in (out / "train").iterdir())
    assert folders[0] == "0_T-shirt_top" and folders[9] == "9_Ankle_boot" and len(folders) == 10
    for split in ("train", "test"):
        images, labels = arrays[split]
        for index in range(len(labels)):
            with Image.open(out / split / folders[labels[index]] / f"{index:02d}.png") as picture:
                assert picture.mode == "L" and np.array_equal(np.asarray(picture), images[index])
    bundle = load_imagefolder(path=out, normalize=False)  # read back: class folder order, then index order
    for split in ("train", "test"):
        images, labels = arrays[split]
        order = np.lexsort((np.arange(len(labels)), labels))
        assert torch.equal(bundle.split(split).images[:, 0], torch.from_numpy(images[order]))
        assert bundle.split(split).labels.tolist() == labels[order].tolist()
    # refusals: a foreign non-empty folder, an earlier export without --overwrite
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert export.main([str(tmp_path / "mine"), "--data-root", str(tmp_path / "idx")]) == 2
    assert "not written by this script" in capsys.readouterr().err and (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    assert export.main([str(out), "--data-root", str(tmp_path / "idx")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert export.main([str(out), "--data-root", str(tmp_path / "idx"), "--overwrite", "--rgb", "--per-class", "1"]) == 0
    pngs = sorted((out / "train").rglob("*.png"))
    assert len(pngs) == 10 and len(list((out / "test").rglob("*.png"))) == 10
    with Image.open(pngs[0]) as picture:
        assert picture.mode == "RGB"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind
