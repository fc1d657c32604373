"""The CUDA path gives the CPU's numbers (skipped where no GPU is present, as on CI)."""

import pytest
import torch

from flint_analysis.am_pi import AmPiConfig
from flint_analysis.checkpoint import load_checkpoint
from flint_analysis.global_interpretation import GlobalConfig, global_interpretation
from flint_analysis.inference import forward_pass
from flint_analysis.local_interpretation import LocalConfig, explain_samples

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_forward_pass_and_global_pipeline_match_the_cpu(mnist5k_checkpoint, mnist5k):
    cpu = load_checkpoint(mnist5k_checkpoint, device="cpu").model
    gpu = load_checkpoint(mnist5k_checkpoint, device="cuda").model
    a = forward_pass(cpu, mnist5k.test, device="cpu")
    b = forward_pass(gpu, mnist5k.test, device="cuda")
    torch.testing.assert_close(a.attributes, b.attributes, rtol=1e-3, atol=1e-4)
    assert (a.g_predictions == b.g_predictions).float().mean() > 0.99
    config = GlobalConfig(subset_size=200, threshold=0.05, am_pi=AmPiConfig(steps=20))
    on_cpu = global_interpretation(cpu, mnist5k.train, config, "cpu")
    on_gpu = global_interpretation(gpu, mnist5k.train, config, "cuda")
    torch.testing.assert_close(on_cpu.relevance.relevance, on_gpu.relevance.relevance, rtol=1e-3, atol=1e-3)
    assert [(p.class_index, p.attribute) for p in on_cpu.pairs] == [(p.class_index, p.attribute) for p in on_gpu.pairs]
    for x, y in zip(on_cpu.analyses, on_gpu.analyses):
        assert torch.equal(x.mas.indices, y.mas.indices)
        assert x.attribution.device.type == "cpu" and y.am_pi.images.device.type == "cpu"
        torch.testing.assert_close(x.attribution, y.attribution, rtol=1e-2, atol=1e-3)


def test_local_explanations_run_on_the_gpu(mnist5k_checkpoint, mnist5k):
    gpu = load_checkpoint(mnist5k_checkpoint, device="cuda").model
    reference = forward_pass(gpu, mnist5k.train, device="cuda")
    images, labels = mnist5k.test.batch([0, 1])
    result = explain_samples(gpu, images, labels.tolist(), reference, LocalConfig(am_pi=AmPiConfig(steps=5)), "cuda")
    assert len(result) == 2 and result[0].top[0].attribution.device.type == "cpu"
