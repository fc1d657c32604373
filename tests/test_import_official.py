"""``flint-analyze import-official``: checkpoints of the authors' FLINT code.

The authors' networks are rebuilt here as independent reference modules, written from
the description of the authors' code (not from the registry's code): their module names (so their
state-dict keys), their tuple-returning forward passes, the unused ``conv2``/``bn1`` modules, the one ReLU
module a ResNet block reuses and passes ``[out, input]`` lists through. Random weights are saved in the
authors' layout (``torch.save`` of a dict with ``f_state_dict`` … ``concise``, NumPy entries pickled under
NumPy 1's module names as their 2021 environment wrote them), converted, and compared.
"""

from __future__ import annotations

import pickle
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from flint_analysis import official_import
from flint_analysis.checkpoint import Checkpoint, load_checkpoint
from flint_analysis.cli import main
from flint_analysis.datasets import CIFAR10_BINARY_FILES, DatasetSpec, load_dataset
from flint_analysis.errors import DatasetError
from flint_analysis.models import build_model, resolve_architecture_kwargs
from tests.conftest import write_idx

CIFAR_MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)  # the notes' §2, written here independently
CIFAR_STD = torch.tensor([0.247, 0.243, 0.261]).view(1, 3, 1, 1)


# ---- the authors' networks, from the notes ---------------------------------------------------------
class RefMnistF(nn.Module):
    """Net2_MNIST_old: returns (logits, tap); dropout before the tap."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1),
                                      nn.MaxPool2d(2), nn.Dropout(0.5), nn.ReLU())
        self.classifier = nn.Sequential(nn.Linear(32 * 14 * 14, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, classes))

    def forward(self, x):
        tap = self.features(x)
        return self.classifier(tap.reshape(-1, 32 * 14 * 14)), tap


class RefMnistPhi(nn.Module):
    """attr_MNIST: conv2 and bn1 exist but are never used; one LeakyReLU used twice."""

    def __init__(self, j: int = 25) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv2 = nn.Conv2d(64, 64, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.fc1 = nn.Linear(576, j)
        self.act = nn.LeakyReLU(0.01)
        self.pool = nn.AdaptiveAvgPool2d(3)

    def forward(self, tap):
        return self.act(self.fc1(self.pool(self.act(self.conv1(tap))).reshape(-1, 576)))


class RefH(nn.Module):
    """explainer: Dropout(0.01) then a linear layer with bias."""

    def __init__(self, j: int, classes: int = 10) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.01)
        self.fc1 = nn.Linear(j, classes)

    def forward(self, phi):
        return self.fc1(self.drop(phi))


class RefMnistD(nn.Module):
    """decode_MNIST: no activation after fc1, ReLU after both transposed convolutions."""

    def __init__(self, j: int = 25) -> None:
        super().__init__()
        self.fc1 = nn.Linear(j, 98)
        self.trconv1 = nn.ConvTranspose2d(2, 8, 3, stride=2, padding=1, output_padding=1)
        self.trconv2 = nn.ConvTranspose2d(8, 1, 3, stride=2, padding=1, output_padding=1)
        self.act = nn.ReLU()

    def forward(self, phi):
        return self.act(self.trconv2(self.act(self.trconv1(self.fc1(phi).reshape(-1, 2, 7, 7)))))


class RefBlock(nn.Module):
    """BasicBlock3: one ReLU module used twice; takes and returns [out, block input]."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.activ = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False))

    def forward(self, pair):
        x = pair[0]
        out = self.conv2(self.activ(self.conv1(x))) + self.shortcut(x)
        return [self.activ(out), x]


class RefResNetCore(nn.Module):
    """ResNet_34 (a ResNet-18 layout, no BN): unused bn1; the ReLU after fc is the stem's module again."""

    def __init__(self, in_maps: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_maps, 64, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        stages, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages.append(nn.Sequential(RefBlock(cin, cout, stride), RefBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(512, 512)
        self.activ = nn.ReLU()

    def forward(self, x):
        out = self.activ(self.conv1(x))
        out = self.layer2(self.layer1([out, out]))
        third = self.layer3(out)
        fourth = self.layer4(third)
        taps = [third[0], fourth[1]]  # layer3's output, layer4's first block's output (its second block's input)
        return self.activ(self.fc(F.avg_pool2d(fourth[0], 4).reshape(x.shape[0], -1))), taps


class RefResNetF(nn.Module):
    """MyResNet(version='34', bn=False): convnet then fc2."""

    def __init__(self, in_maps: int, classes: int = 10) -> None:
        super().__init__()
        self.convnet = RefResNetCore(in_maps)
        self.fc2 = nn.Linear(512, classes)

    def forward(self, x):
        hidden, taps = self.convnet(x)
        return self.fc2(hidden), taps


class RefResNetPhi(nn.Module):
    """attr_RN18_multi: stride-2 conv on layer3, conv on layer4.0, concat, conv, pool 3, fc, ReLU; bn1 unused."""

    def __init__(self, j: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(256, 64, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(512, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(128, 64, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.fc1 = nn.Linear(576, j)
        self.activ = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(3)

    def forward(self, taps):
        x = torch.cat([self.activ(self.conv1(taps[0])), self.activ(self.conv2(taps[1]))], 1)
        return self.activ(self.fc1(self.pool(self.activ(self.conv3(x))).reshape(-1, 576)))


class RefResNetD(nn.Module):
    """decode2_MNIST (QuickDraw: output ReLU) or decode_CIFAR (no output activation)."""

    def __init__(self, j: int, cifar: bool) -> None:
        super().__init__()
        self.cifar = cifar
        a, b, c, side, out = (10, 24, 8, 32, 3) if cifar else (2, 4, 8, 28, 1)
        self.shape = (a, side // 4, side // 4)
        self.image = (out, side, side)
        self.fc1 = nn.Linear(j, a * (side // 4) ** 2)
        self.trconv1 = nn.ConvTranspose2d(a, b, 3, stride=2, padding=1, output_padding=1)
        self.trconv2 = nn.ConvTranspose2d(b, c, 3, stride=2, padding=1, output_padding=1)
        self.fc2 = nn.Linear(c * side * side, out * side * side)
        self.activ = nn.ReLU()

    def forward(self, phi):
        x = self.activ(self.trconv2(self.activ(self.trconv1(self.fc1(phi).reshape(-1, *self.shape)))))
        x = self.fc2(x.reshape(x.shape[0], -1))
        return (x if self.cifar else self.activ(x)).reshape(-1, *self.image)


NETWORKS = {  # --dataset → (f, Φ, h, d, input shape)
    "mnist": lambda: (RefMnistF(), RefMnistPhi(25), RefH(25), RefMnistD(25), (1, 28, 28)),
    "fashion-mnist": lambda: (RefMnistF(), RefMnistPhi(25), RefH(25), RefMnistD(25), (1, 28, 28)),
    "quickdraw": lambda: (RefResNetF(1), RefResNetPhi(24), RefH(24), RefResNetD(24, cifar=False), (1, 28, 28)),
    "cifar10": lambda: (RefResNetF(3), RefResNetPhi(36), RefH(36), RefResNetD(36, cifar=True), (3, 32, 32)),
}


def _randomise(*modules: nn.Module) -> None:
    """Random weights at a scale that keeps activations alive through the networks; random BN statistics."""
    with torch.no_grad():
        for module in modules:
            for name, tensor in module.state_dict().items():
                if tensor.dtype.is_floating_point:
                    fan_in = tensor[0].numel() if tensor.ndim > 1 else 1
                    tensor.copy_(torch.randn_like(tensor) * (1.5 / fan_in ** 0.5 if tensor.ndim > 1 else 0.1))
                    if name.endswith("running_var"):
                        tensor.abs_().add_(0.5)
                else:
                    tensor.fill_(7)  # num_batches_tracked


# ---- the authors' file layout -----------------------------------------------------------------------
class _Numpy1Pickler(pickle._Pickler):
    """Writes NumPy's reconstruction functions under NumPy 1's module name, as the authors' environment did."""

    def save_global(self, obj, name=None):
        core = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
        if obj is core._reconstruct or obj is core.scalar:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n" + obj.__name__.encode() + b"\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


_NUMPY1_PICKLE = types.ModuleType("pickle")
_NUMPY1_PICKLE.Pickler = _Numpy1Pickler


def save_authors_file(path: Path, f, phi, h, d, **extra) -> Path:
    """``save_model``'s dict: the four state dicts, the λ text, numpy test/train info, the run name, ``concise``."""
    payload = {
        "f_state_dict": f.state_dict(), "g_state_dict": phi.state_dict(), "h_state_dict": h.state_dict(),
        "d_state_dict": d.state_dict(),
        "last_weights": "lmbd_acc=1.0, lmbd_rec=5.0*int(epoch>0), lmbd_expl=0.1*int(epoch>2)",
        "test_info": np.array([[10.0 + e, 2.3, 0.1, 0.5, 0.2, 11.0 + e] for e in range(14)]),
        "train_info": np.array([[2.0, 0.1, 0.4, 0.3, 0.2]] * 12),
        "extra_info": "sample_run",
        "concise": [np.int64(k + 1) / 3 for k in range(6)],  # NumPy float64 values, as the authors' sparse_sense returns
        **extra,
    }
    torch.save(payload, path, pickle_module=_NUMPY1_PICKLE, pickle_protocol=2)
    return path


@pytest.fixture(scope="module")
def authors(tmp_path_factory):
    """dataset → (path, (f, Φ, h, d) in eval mode, input shape), one file per network family."""
    folder = tmp_path_factory.mktemp("authors")
    made = {}
    for index, dataset in enumerate(("mnist", "quickdraw", "cifar10")):
        torch.manual_seed(index)
        *networks, shape = NETWORKS[dataset]()
        _randomise(*networks)
        for module in networks:
            module.eval()
        made[dataset] = (save_authors_file(folder / f"{dataset}.pt", *networks), networks, shape)
    return made


def _import(tmp_path, source, dataset, capsys, name="ckpt.pt"):
    out = tmp_path / name
    code = main(["import-official", str(source), "--dataset", dataset, "-o", str(out)])
    return code, out, capsys.readouterr()


def _one_line_error(capsys_result, *fragments) -> str:
    err = capsys_result.err.strip()
    assert err.count("\n") == 0 and err.startswith("flint-analyze: error: "), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


# ---- conversion is exact ----------------------------------------------------------------------------
@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist", "quickdraw", "cifar10"])
def test_converted_networks_compute_what_the_authors_networks_compute(dataset, authors, tmp_path, capsys):
    source, (f, phi, h, d), shape = authors["mnist" if dataset == "fashion-mnist" else dataset]
    data = zipfile.ZipFile(source).read(next(n for n in zipfile.ZipFile(source).namelist() if n.endswith("data.pkl")))
    assert b"numpy.core.multiarray" in data and b"numpy._core" not in data  # the authors' NumPy 1 pickle names
    before = set(map(repr, torch.serialization.get_safe_globals()))  # torch keeps no fixed order
    code, out, printed = _import(tmp_path, source, dataset, capsys)
    assert code == 0, printed.err
    assert set(map(repr, torch.serialization.get_safe_globals())) == before  # the NumPy allowances were scoped to the one load
    checkpoint = load_checkpoint(out)
    model = checkpoint.model
    torch.manual_seed(5)
    x = torch.rand(4, *shape)
    normalised = (x - CIFAR_MEAN) / CIFAR_STD if dataset == "cifar10" else x  # the authors fed normalised CIFAR images
    with torch.no_grad():
        logits, taps = f(normalised)
        attributes = phi(taps)
        expected = (logits, attributes, h(attributes), d(attributes))
        ours = model(x, reconstruct=True)
    reconstruction = expected[3] * CIFAR_STD + CIFAR_MEAN if dataset == "cifar10" else expected[3]
    for name, mine, theirs in zip(("f logits", "Φ", "g logits", "decoder"), ours, (*expected[:3], reconstruction)):
        assert theirs.abs().max() > 1e-2, f"{name}: the reference output is too small to compare"
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-6, msg=name)
    if dataset == "mnist":
        assert bool((attributes < 0).any())  # LeakyReLU Φ: negative attributes survive the conversion
    # what was dropped, and the spec and provenance every analysis and `info` read
    family = "lenet" if dataset in ("mnist", "fashion-mnist") else "resnet"
    record = checkpoint.training.extra["imported"]
    expected_dropped = {f"{name}.{key}" for name, keys in official_import.UNUSED_KEYS[family].items() for key in keys}
    assert set(record["dropped_keys"]) == expected_dropped
    assert record["source_sha256"] == checkpoint_sha(source) and record["dataset"] == dataset
    assert record["authors_entries"]["test_info_last"]["fidelity_percent"] == 24.0 and len(record["authors_entries"]["concise"]) == 6
    assert checkpoint.architecture == {"lenet": "lenet", "resnet": "official-resnet18"}[family]
    assert checkpoint.dataset.name == dataset and checkpoint.dataset.input_shape == shape and checkpoint.history == []
    if dataset == "quickdraw":  # evaluated on the authors' split, not a seeded one
        assert checkpoint.dataset.options["split"] == "rows" and checkpoint.dataset.split_seed is None
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    for fragment in (f"imported      from {source.resolve()}", record["source_sha256"], "layout authors-flint-v1", f"--dataset {dataset}",
                     "dropped (unused by the authors' networks): " + ", ".join(record["dropped_keys"]),
                     "Dropout(p=0.01)", "accuracy f 23.00%, fidelity 24.00% (test_info, 14 rows)", "training      by the authors' code"):
        assert fragment in text, fragment


def checkpoint_sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- converted checkpoints run the analyses ------------------------------------------------------------
def _mnist_files(root: Path, train: int, test: int) -> None:
    generator = np.random.default_rng(0)
    for prefix, n in (("train", train), ("t10k", test)):
        write_idx(root / "MNIST" / "raw" / f"{prefix}-images-idx3-ubyte", generator.integers(0, 256, (n, 28, 28)).astype(np.uint8))
        write_idx(root / "MNIST" / "raw" / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))


def _cifar_files(root: Path, per_file: int) -> None:
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    generator = np.random.default_rng(1)
    for names in CIFAR10_BINARY_FILES.values():
        for name in names:
            labels = (np.arange(per_file, dtype=np.uint8) % 10)[:, None]
            (folder / name).write_bytes(np.hstack([labels, generator.integers(0, 256, (per_file, 3072), dtype=np.uint8)]).tobytes())


def test_a_converted_checkpoint_runs_global_local_and_metrics(authors, tmp_path, monkeypatch, capsys):
    _mnist_files(tmp_path / "data", train=60, test=20)
    monkeypatch.setitem(official_import.SPLIT_SIZES, "mnist", (60, 20))  # the synthetic files' splits
    code, ckpt, printed = _import(tmp_path, authors["mnist"][0], "mnist", capsys)
    assert code == 0, printed.err
    data = ["--data-root", str(tmp_path / "data"), "--quiet"]
    assert main(["global", str(ckpt), "-o", str(tmp_path / "global"), "--subset-size", "40", "--threshold", "0", "--mas", "1",
                 "--am-pi-steps", "2", *data]) == 0
    assert main(["local", str(ckpt), "--index", "0", "1", "-o", str(tmp_path / "local"), "--am-pi-steps", "2", *data]) == 0
    assert main(["metrics", str(ckpt), "-o", str(tmp_path / "metrics"), *data]) == 0
    assert (tmp_path / "global" / "global.json").is_file() and (tmp_path / "metrics" / "metrics.json").is_file()
    assert (tmp_path / "local" / "local.json").is_file()


def test_a_converted_cifar10_checkpoint_runs_metrics_and_local_on_rgb_data(authors, tmp_path, monkeypatch, capsys):
    _cifar_files(tmp_path / "data", per_file=4)
    monkeypatch.setitem(official_import.SPLIT_SIZES, "cifar10", (20, 4))
    code, ckpt, printed = _import(tmp_path, authors["cifar10"][0], "cifar10", capsys)
    assert code == 0, printed.err
    assert any("Normalize" in line for line in printed.out.splitlines() if line.startswith("note:"))
    data = ["--data-root", str(tmp_path / "data"), "--quiet"]
    assert main(["metrics", str(ckpt), "-o", str(tmp_path / "metrics"), *data]) == 0
    assert main(["local", str(ckpt), "--index", "0", "-o", str(tmp_path / "local"), "--top", "1", "--am-pi-steps", "2", *data]) == 0
    assert (tmp_path / "metrics" / "metrics.json").is_file() and (tmp_path / "local" / "local.json").is_file()


# ---- untrusted and wrong files ---------------------------------------------------------------------------
class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def test_a_file_that_would_run_code_is_refused_and_the_code_does_not_run(authors, tmp_path, capsys):
    marker = tmp_path / "marker"
    f, phi, h, d = authors["mnist"][1]
    source = save_authors_file(tmp_path / "evil.pt", f, phi, h, d, extra_info=_RunsCode(marker))
    code, out, printed = _import(tmp_path, source, "mnist", capsys)
    assert code == 2 and not marker.exists() and not out.exists()
    _one_line_error(printed, str(source), "could run code", "exec")


def _tiny_mnist_source(tmp_path: Path, **changes) -> Path:
    torch.manual_seed(0)
    f, phi, h, d = RefMnistF(), RefMnistPhi(25), RefH(25), RefMnistD(25)
    payload = {"f_state_dict": f.state_dict(), "g_state_dict": phi.state_dict(), "h_state_dict": h.state_dict(),
               "d_state_dict": d.state_dict(), "test_info": np.zeros((3, 6))}
    for key, change in changes.items():
        change(payload)
    path = tmp_path / "src.pt"
    torch.save(payload, path)
    return path


def _edit(part: str, fn):
    def change(payload):
        payload[part] = dict(payload[part])
        fn(payload[part])
    return change


@pytest.mark.parametrize("change, fragments", [
    ({"missing": _edit("h_state_dict", lambda s: s.pop("fc1.bias"))}, ["h_state_dict has no 'fc1.bias'"]),
    ({"unexpected": _edit("g_state_dict", lambda s: s.update({"conv4.weight": torch.zeros(1)}))},
     ["g_state_dict has the unexpected key 'conv4.weight'"]),
    ({"shape": _edit("d_state_dict", lambda s: s.update({"fc1.weight": torch.zeros(98, 24)}))},
     ["d_state_dict['fc1.weight'] has shape 98×24, the authors' network expects 98×25"]),
    ({"nan": _edit("f_state_dict", lambda s: s.update({"classifier.3.bias": torch.full((10,), float("nan"))}))},
     ["f_state_dict['classifier.3.bias'] holds 10 NaN/Inf values"]),
    ({"classes": _edit("f_state_dict", lambda s: s.update({"classifier.3.weight": torch.zeros(345, 128)}))},
     ["its f has 345 outputs but --dataset mnist has 10 classes"]),
    ({"layout": lambda p: p.pop("g_state_dict")}, ["not in the authors' layout: no 'g_state_dict'"]),
    ({"object": lambda p: p.update(test_info=np.array([1, "a"], dtype=object))}, ["could run code"]),
    ({"info": lambda p: p.update(test_info=[1, 2])}, ["its test_info is a list, not the authors' numeric array"]),
])
def test_a_wrong_file_gets_one_line_naming_the_mismatch(change, fragments, tmp_path, capsys):
    source = _tiny_mnist_source(tmp_path, **change)
    code, out, printed = _import(tmp_path, source, "mnist", capsys)
    assert code == 2 and not out.exists()
    _one_line_error(printed, *fragments)


@pytest.mark.parametrize("source_dataset, flag, fragments", [
    ("quickdraw", "mnist", ["its f is the authors' ResNet", "use --dataset quickdraw or cifar10"]),
    ("mnist", "cifar10", ["its f is the authors' MNIST/FashionMNIST network", "use --dataset mnist or fashion-mnist"]),
    ("cifar10", "quickdraw", ["takes 3-channel images", "the authors' CIFAR-10 network (3 channels), not quickdraw's (1 channel)", "use --dataset cifar10"]),
    ("quickdraw", "cifar10", ["takes 1-channel images", "the authors' QuickDraw network (1 channel), not cifar10's (3 channels)", "use --dataset quickdraw"]),
])
def test_a_mislabelled_file_gets_one_line_naming_the_right_dataset(source_dataset, flag, fragments, authors, tmp_path, capsys):
    code, out, printed = _import(tmp_path, authors[source_dataset][0], flag, capsys)
    assert code == 2 and not out.exists()
    _one_line_error(printed, *fragments)


def test_truncated_empty_foreign_and_flint_files_get_one_line(authors, tmp_path, capsys):
    whole = authors["mnist"][0].read_bytes()
    cases = {
        "truncated.pt": (whole[: len(whole) // 2], "truncated or corrupted"),
        "empty.pt": (b"", "is empty"),
        "text.pt": (b"hello", "is not a torch file"),
    }
    for name, (content, fragment) in cases.items():
        (tmp_path / name).write_bytes(content)
        code, out, printed = _import(tmp_path, tmp_path / name, "mnist", capsys, name="out.pt")
        assert code == 2 and not out.exists()
        _one_line_error(printed, fragment)
    kwargs = resolve_architecture_kwargs("lenet", {})
    Checkpoint(build_model("lenet", kwargs), "lenet", kwargs, DatasetSpec("mnist", tuple("0123456789"), (1, 28, 28))).save(tmp_path / "ours.pt")
    code, out, printed = _import(tmp_path, tmp_path / "ours.pt", "mnist", capsys, name="out.pt")
    _one_line_error(printed, "already a flint-analysis checkpoint")
    torch.save(RefMnistF().state_dict(), tmp_path / "bare.pt")
    code, out, printed = _import(tmp_path, tmp_path / "bare.pt", "mnist", capsys, name="out.pt")
    _one_line_error(printed, "one bare state dict")
    code, out, printed = _import(tmp_path, tmp_path / "missing.pt", "mnist", capsys, name="out.pt")
    _one_line_error(printed, "does not exist")


def test_an_existing_output_is_kept_without_overwrite(authors, tmp_path, capsys):
    (tmp_path / "ckpt.pt").write_bytes(b"keep")
    code, out, printed = _import(tmp_path, authors["mnist"][0], "mnist", capsys)
    assert code == 2 and out.read_bytes() == b"keep"
    _one_line_error(printed, "exists; replace it with --overwrite")
    assert main(["import-official", str(authors["mnist"][0]), "--dataset", "mnist", "-o", str(out), "--overwrite"]) == 0
    assert load_checkpoint(out).architecture == "lenet"


# ---- the CIFAR-10 binary loader --------------------------------------------------------------------------
def test_cifar10_reads_the_binary_version_and_refuses_the_python_one(tmp_path):
    _cifar_files(tmp_path / "bin", per_file=3)
    bundle = load_dataset("cifar10", data_root=tmp_path / "bin")
    assert (len(bundle.train), len(bundle.test)) == (15, 3) and bundle.spec.input_shape == (3, 32, 32)
    raw = (tmp_path / "bin" / "cifar-10-batches-bin" / "test_batch.bin").read_bytes()
    assert torch.equal(bundle.test.images[1].flatten(), torch.from_numpy(np.frombuffer(raw[3073 + 1: 2 * 3073], dtype=np.uint8).copy()))
    assert bundle.test.labels.tolist() == [0, 1, 2]
    pickled = tmp_path / "py" / "cifar-10-batches-py"
    pickled.mkdir(parents=True)
    (pickled / "data_batch_1").write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(DatasetError, match="Python \\(pickle\\) version.*binary version \\(cifar-10-binary.tar.gz"):
        load_dataset("cifar10", data_root=tmp_path / "py")
    (tmp_path / "bin" / "cifar-10-batches-bin" / "test_batch.bin").write_bytes(raw[:-5])
    with pytest.raises(DatasetError, match="not a whole number of 3073-byte records"):
        load_dataset("cifar10", data_root=tmp_path / "bin")


def test_quickdraw_rows_split_is_the_authors_file_order_split(tmp_path):
    for k, name in enumerate(("cat", "dog")):
        rows = np.repeat(np.arange(12, dtype=np.uint8)[:, None] + 20 * k, 784, axis=1)
        np.save(tmp_path / f"{name}_small.npy", rows)
        np.save(tmp_path / f"{name}.npy", np.full((12, 784), 255, dtype=np.uint8))  # a full file beside it is not read
    bundle = load_dataset("quickdraw", data_root=tmp_path, classes=("cat", "dog"), samples_per_class=10, split="rows")
    assert bundle.train.images[:, 0, 0, 0].tolist() == [*range(8), *range(20, 28)]
    assert bundle.test.images[:, 0, 0, 0].tolist() == [8, 9, 28, 29]
    assert bundle.spec.options["split"] == "rows" and bundle.spec.split_seed is None
    seeded = load_dataset("quickdraw", data_root=tmp_path, classes=("cat", "dog"), samples_per_class=10)
    assert "split" not in seeded.spec.options and int(seeded.train.images.min()) == 255


def test_an_import_record_holding_more_than_plain_data_is_refused_when_loaded(tmp_path, capsys):
    kwargs = resolve_architecture_kwargs("lenet", {})
    spec = DatasetSpec("mnist", tuple("0123456789"), (1, 28, 28))
    for record, fragment in (({"source": torch.zeros(3)}, "the import record.source"), ([1], "an import record of type list"),
                             ({"notes": [{"a": {"b": {"c": [1]}}}]}, "expected plain text")):
        path = tmp_path / "c.pt"
        Checkpoint(build_model("lenet", kwargs), "lenet", kwargs, spec, training={"imported": record}).save(path)
        assert main(["info", str(path)]) == 2
        _one_line_error(capsys.readouterr(), fragment)
