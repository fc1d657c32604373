"""AM+PI's bounded and soft modes, per-run stopping and outcomes, against independent computations."""

import json
import math

import pytest
import torch
from torch import nn

from flint_analysis import cli as analyze_cli
from flint_analysis.am_pi import AmPiConfig, AmPiOutcome, AmPiResult, AmPiSummary, am_pi
from flint_analysis.errors import InputError
from flint_analysis.global_interpretation import AmPiSummary as ReExported


def small_head(seed: int = 0, attributes: int = 3) -> nn.Module:
    """A small non-linear attribute function on 1×8×8 inputs, float64."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 64, attributes)).double().eval()


def linear_head(weights: torch.Tensor) -> nn.Module:
    """φ_j(x) = <w_j, x> for ``weights`` of shape ``(J, 1, H, W)``, float64."""
    head = nn.Sequential(nn.Flatten(), nn.Linear(weights[0].numel(), weights.shape[0], bias=False)).double()
    head[1].weight.data = weights.flatten(1).double()
    return head.eval()


def paper_am_pi(head: nn.Module, samples: torch.Tensor, targets: torch.Tensor, directions: torch.Tensor, config: AmPiConfig) -> torch.Tensor:
    """The paper's objective written out independently, one image at a time (the soft mode)."""
    low, high = config.value_range
    outputs = []
    for b in range(samples.shape[0]):
        x = (config.init_scale * samples[b : b + 1]).clone().requires_grad_(True)
        optimizer = torch.optim.Adam([x], lr=config.learning_rate)
        for step in range(config.steps):
            for group in optimizer.param_groups:
                group["lr"] = config.learning_rate * 0.5 ** (step // config.halve_every)
            phi = head(x)[0, targets[b]]
            tv = (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
            outside = ((x < low) | (x > high)).double()
            bo = (x.abs() * outside).mean()
            loss = -(config.lambda_phi * directions[b] * phi - config.lambda_tv * tv - config.lambda_bo * bo)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        outputs.append(x.detach())
    return torch.cat(outputs)


def test_soft_mode_is_the_papers_formula():
    head = small_head(seed=1)
    samples = torch.rand(3, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    targets, directions = torch.tensor([0, 2, 1]), torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    config = AmPiConfig(mode="soft", steps=25, halve_every=10, learning_rate=0.2, lambda_phi=20.0, target_ratio=0.5)  # target: ignored when soft
    result = am_pi(head, samples, targets, directions, config=config)
    torch.testing.assert_close(result.images, paper_am_pi(head, samples, targets, directions, config), rtol=0, atol=1e-10)
    assert result.stop_step.tolist() == [-1, -1, -1]
    assert float(result.out_of_range_fraction.min()) > 0.3  # the penalty form leaves the range here: Bo is exercised


def test_bounded_runs_never_leave_the_range_at_any_step():
    head = small_head(seed=3, attributes=6)
    samples = torch.rand(3, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for value_range in ((0.0, 1.0), (-0.25, 0.5)):
        steps = 20
        config = AmPiConfig(steps=steps, learning_rate=0.3, lambda_tv=0.0, target_ratio=0.0, value_range=value_range,
                            snapshot_steps=tuple(range(steps + 1)))
        result = am_pi(head, samples, torch.tensor([0, 3, 5]), torch.tensor([1.0, -1.0, 1.0]), config=config)
        low, high = value_range
        assert sorted(result.snapshots) == list(range(steps + 1))
        for step, images in result.snapshots.items():
            assert float(images.min()) >= low and float(images.max()) <= high, step
        torch.testing.assert_close(result.snapshots[steps], result.images, rtol=0, atol=0)
        assert result.out_of_range_fraction.tolist() == [0.0, 0.0, 0.0]
        # The projection is active: pixels sit on both bounds, and the soft mode leaves the range at this learning rate.
        assert bool((result.images == low).any()) and bool((result.images == high).any())
        soft = am_pi(head, samples, torch.tensor([0, 3, 5]), config=AmPiConfig(
            mode="soft", steps=steps, learning_rate=0.3, lambda_tv=0.0, lambda_bo=0.0, value_range=value_range))
        assert float(soft.out_of_range_fraction.min()) > 0


def test_a_stopped_run_stays_put_while_another_keeps_moving():
    torch.manual_seed(0)
    w = torch.randn(1, 1, 6, 6, dtype=torch.float64)
    best = (w > 0).double()  # the input in [0, 1] that maximises <w, x>
    head = linear_head(w)
    samples = torch.cat([0.2 * best, best])  # run 0 can reach 1.5× its reference, run 1 cannot
    steps, target = 40, 1.5
    config = AmPiConfig(steps=steps, lambda_tv=0.0, target_ratio=target, snapshot_steps=tuple(range(steps + 1)))
    result = am_pi(head, samples, torch.tensor([0, 0]), config=config)
    stop = int(result.stop_step[0])
    assert 0 < stop < steps and int(result.stop_step[1]) == -1
    with torch.no_grad():
        phi = {s: head(images)[:, 0] for s, images in result.snapshots.items()}
        reference = head(samples)[:, 0]
    torch.testing.assert_close(result.reference_activation, reference, rtol=0, atol=1e-12)
    # The stopping rule, checked on the snapshots: the first step at which φ_j ≥ target · reference.
    assert float(phi[stop][0]) >= target * float(reference[0]) > float(phi[stop - 1][0])
    for s in range(stop, steps + 1):
        assert torch.equal(result.snapshots[s][0], result.snapshots[stop][0]), s  # bit-identical from the stop on
    assert torch.equal(result.images[0], result.snapshots[stop][0])
    # Run 1 keeps moving after run 0 stopped (Adam's momentum alone would also have moved run 0).
    moved = [not torch.equal(result.snapshots[s][1], result.snapshots[s - 1][1]) for s in range(stop + 1, steps + 1)]
    assert all(moved[:5]) and float(phi[steps][1]) > float(phi[stop][1])
    # Run 0 alone stops at the same step with the same image.
    alone = am_pi(head, samples[:1], torch.tensor([0]), config=config)
    assert int(alone.stop_step[0]) == stop and torch.equal(alone.images[0], result.images[0])
    assert result.outcomes[0] == AmPiOutcome.ACTIVATED and float(result.ratio[0]) >= target


def test_all_runs_stopped_ends_early_and_fills_later_snapshots():
    head = linear_head(torch.ones(1, 1, 4, 4))
    samples = torch.full((2, 1, 4, 4), 0.1, dtype=torch.float64)
    config = AmPiConfig(steps=50, lambda_tv=0.0, target_ratio=1.0, snapshot_steps=(0, 49, 50))
    result = am_pi(head, samples, torch.tensor([0, 0]), config=config)
    assert all(0 < s < 49 for s in result.stop_step.tolist())
    torch.testing.assert_close(result.snapshots[0], 0.1 * samples, rtol=0, atol=0)
    assert torch.equal(result.snapshots[49], result.images) and torch.equal(result.snapshots[50], result.images)


@pytest.mark.parametrize("mode", ["bounded", "soft"])
def test_batched_equals_single_in_float64(mode):
    head = small_head(seed=2, attributes=5)
    samples = torch.rand(4, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    targets, directions = torch.tensor([1, 4, 1, 0]), torch.tensor([1.0, 1.0, -1.0, 1.0])
    config = AmPiConfig(mode=mode, steps=40, halve_every=15, target_ratio=0.6, snapshot_steps=(10,))
    batched = am_pi(head, samples, targets, directions, config=config)
    if mode == "bounded":
        assert (batched.stop_step >= 0).any()  # some runs stop early, so the freezing is exercised
    for b in range(4):
        single = am_pi(head, samples[b : b + 1], targets[b : b + 1], directions[b : b + 1], config=config)
        torch.testing.assert_close(batched.images[b : b + 1], single.images, rtol=0, atol=1e-10)
        torch.testing.assert_close(batched.snapshots[10][b : b + 1], single.snapshots[10], rtol=0, atol=1e-10)
        assert int(batched.stop_step[b]) == int(single.stop_step[0])
        torch.testing.assert_close(batched.reference_activation[b], single.reference_activation[0], rtol=0, atol=1e-10)
    chunked = am_pi(head, samples, targets, directions, config=config, batch_size=3)
    torch.testing.assert_close(chunked.images, batched.images, rtol=0, atol=1e-10)
    assert torch.equal(chunked.stop_step, batched.stop_step)


def test_recorded_quantities_equal_independent_recomputation():
    head = small_head(seed=4)
    samples = torch.rand(3, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    targets, directions = torch.tensor([0, 1, 2]), torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    config = AmPiConfig(mode="soft", steps=15, learning_rate=0.3, lambda_bo=0.0, value_range=(0.0, 0.8))
    result = am_pi(head, samples, targets, directions, config=config)
    for b in range(3):
        pixels = result.images[b].flatten().tolist()
        with torch.no_grad():
            reference = float(head(samples[b : b + 1])[0, targets[b]])
            initial = float(head(0.1 * samples[b : b + 1])[0, targets[b]])
            final = float(head(result.images[b : b + 1])[0, targets[b]])
        d = float(directions[b])
        record = result.run_record(b)
        assert record["reference_activation"] == pytest.approx(reference, abs=1e-12)
        assert record["initial_activation"] == pytest.approx(initial, abs=1e-12)
        assert record["final_activation"] == pytest.approx(final, abs=1e-12)
        assert record["gain"] == pytest.approx(d * (final - initial), abs=1e-12)
        expected_ratio = d * final / (d * reference) if d * reference > 0 else None
        assert record["ratio"] == (None if expected_ratio is None else pytest.approx(expected_ratio, rel=1e-12))
        assert record["out_of_range_fraction"] == pytest.approx(sum(1 for v in pixels if v < 0 or v > 0.8) / len(pixels), abs=1e-12)
        assert record["max_abs_pixel"] == pytest.approx(max(abs(v) for v in pixels), abs=1e-12)
        assert record["stop_step"] == -1 and record["raised"] == (d * (final - initial) > 0)
    assert 0 < sum(r["out_of_range_fraction"] for r in map(result.run_record, range(3)))
    json.dumps([result.run_record(b) for b in range(3)], allow_nan=False)


def hand_built(directions, reference, initial, final, saturation=3.0) -> AmPiResult:
    as_tensor = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return AmPiResult(torch.zeros(len(final), 1, 2, 2), as_tensor(initial), as_tensor(final), as_tensor(directions),
                      as_tensor(reference), saturation_ratio=saturation)


def test_outcomes_follow_their_definitions():
    result = hand_built(
        directions=[1, 1, 1, 1, 1, -1, -1, 1, 1, 1],
        reference=[2.0, 2.0, 2.0, 2.0, 2.0, -2.0, -2.0, -1.0, 0.0, -1.0],
        initial=[0.2, 0.2, 0.2, 0.2, 3.0, -0.2, -0.2, -2.0, 0.0, 0.5],
        final=[1.0, 2.0, 6.0, 6.2, 2.5, -7.0, -1.0, -0.5, -0.3, 0.0],
    )
    expected_ratio = [0.5, 1.0, 3.0, 3.1, 1.25, 3.5, 0.5, None, None, None]
    for got, want in zip(result.ratio.tolist(), expected_ratio):
        assert math.isnan(got) if want is None else got == pytest.approx(want)
    A, S, N = AmPiOutcome.ACTIVATED, AmPiOutcome.SATURATED, AmPiOutcome.NOT_ACTIVATED
    # 1.0 and 3.0 are activated (bounds included); run 4 activated though φ_j fell from its initialisation;
    # undefined ratio: activated when raised and at least the reference, else not activated.
    assert result.outcomes == [N, A, A, S, A, S, N, A, N, N]
    assert result.raised.tolist() == [True, True, True, True, False, True, True, True, False, False]
    assert [o.symbol for o in (A, S, N)] == ["✓", "⚠", "✗"] and N.label == "not activated" and A == "activated"
    summary = AmPiSummary.from_results([result.select(slice(0, 4)), result.select(slice(4, 10))])
    assert (summary.runs, summary.activated, summary.saturated, summary.not_activated, summary.raised) == (10, 4, 2, 4, 7)
    assert summary.to_dict() == {"runs": 10, "activated": 4, "saturated": 2, "not_activated": 4, "raised": 7, "not_raised": 3,
                                 "saturation_ratio": 3.0, "weak": 0}
    assert summary.headline() == ("AM+PI activated the attribute (reached its MAS's own φ_j) in 4 of 10 runs; "
                                  "2 saturated (> 3× the MAS value); 4 did not")
    assert ReExported is AmPiSummary
    assert hand_built([1], [1.0], [0.0], [2.5], saturation=2.0).outcomes == [S]
    assert AmPiSummary.from_results([]).runs == 0


def test_config_checks_and_command_line_flags():
    for bad in (dict(mode="clamped"), dict(saturation_ratio=0.5), dict(target_ratio=-1.0), dict(snapshot_steps=(301,)),
                dict(snapshot_steps=(-1,))):
        with pytest.raises(InputError):
            AmPiConfig(**bad)
    assert AmPiConfig().mode == "bounded" and AmPiConfig(steps=5, snapshot_steps=(0, 5)).to_dict()["snapshot_steps"] == [0, 5]
    args = analyze_cli.build_parser().parse_args(["global", "m.pt", "--am-pi-mode", "soft", "--am-pi-target", "1.2",
                                                  "--am-pi-saturation", "4"])
    config = analyze_cli._am_pi_config(args, (0.0, 1.0))
    assert (config.mode, config.target_ratio, config.saturation_ratio) == ("soft", 1.2, 4.0)
    defaults = analyze_cli._am_pi_config(analyze_cli.build_parser().parse_args(["local", "m.pt", "--index", "0"]), (0.0, 1.0))
    assert defaults == AmPiConfig()


def test_weak_reference_follows_its_definition():
    """A run is weak when its sample's |φ_j| is under 10 % of the attribute's scale; unknown scale: never weak."""
    from flint_analysis.am_pi import WEAK_REFERENCE_FRACTION, AmPiResult, AmPiSummary

    reference = torch.tensor([0.05, -0.05, 0.5, 0.09, 0.2])
    scale = torch.tensor([1.0, 1.0, 1.0, 1.0, float("nan")])
    result = AmPiResult(torch.zeros(5, 1, 2, 2), torch.zeros(5), reference * 2, torch.ones(5), reference_activation=reference)
    assert result.weak_reference.tolist() == [False] * 5  # no scale given
    scaled = result.with_reference_scale(scale)
    expected = [abs(r) < WEAK_REFERENCE_FRACTION * s for r, s in zip(reference.tolist(), scale.tolist())]
    assert scaled.weak_reference.tolist() == expected == [True, True, False, True, False]
    records = [scaled.run_record(k) for k in range(5)]
    assert [r["weak_reference"] for r in records] == expected
    assert records[4]["reference_scale"] is None and records[0]["reference_scale"] == 1.0
    summary = AmPiSummary.from_results([scaled.select(slice(0, 3)), scaled.select(slice(3, 5))])
    assert summary.weak == 3 and summary.to_dict()["weak"] == 3
    assert "3 started from a weak MAS" in summary.headline()
