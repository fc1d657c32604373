"""Typed records of how a model was trained, as a checkpoint stores them.

- :class:`TrainingRecord`: the checkpoint's ``training`` entry (preset, config, seed, schedule, environments);
- :class:`EnvironmentRecord`: one entry of ``training.environments``;
- :class:`EpochRecord`: one entry of the checkpoint's ``history``.

Each record's ``to_dict()`` gives the plain dict written to the file (the checkpoint format is unchanged:
a key the file did not hold stays out, keys this package does not know are kept in ``extra``), and
``from_dict()`` reads one back; :func:`~flint_analysis.checkpoint.load_checkpoint` type-checks the dicts
before. The hyper-parameters are a :class:`~flint_analysis.training.config.TrainingConfig`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flint_analysis.training.config import TrainingConfig


def _training_config(config: Any) -> TrainingConfig:
    # imported here: flint_analysis.training imports the checkpoint module, which imports this one
    from flint_analysis.training.config import TrainingConfig

    return config if isinstance(config, TrainingConfig) else TrainingConfig.from_dict(config)


def _split(data: Mapping[str, Any], known: Iterable[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``data``'s entries with a key in ``known`` and the others."""
    known = set(known)
    return ({k: v for k, v in data.items() if k in known}, {k: v for k, v in data.items() if k not in known})


def _present(entries: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """The entries whose value is not ``None`` (``None`` stands for a key the file did not hold)."""
    return {key: value for key, value in entries if value is not None}


@dataclass(frozen=True)
class EnvironmentRecord:
    """The compute environment one run of ``flint-train`` trained in (one entry of ``training.environments``).

    Attributes:
        first_epoch: the 0-based epoch the run started at (``None``: not recorded).
        environment: :func:`~flint_analysis.runtime.compute_environment`'s record (torch build, CPU capability,
            threads, machine, device).
    """

    first_epoch: int | None = None
    environment: Mapping[str, str | int | float | bool | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**_present([("first_epoch", self.first_epoch)]), **self.environment}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnvironmentRecord:
        rest = {key: value for key, value in data.items() if key != "first_epoch"}
        return cls(first_epoch=data.get("first_epoch"), environment=rest)


@dataclass(frozen=True)
class TrainingRecord:
    """How a checkpoint's model was trained (its ``training`` entry).

    Every field is ``None`` where the file has no such key (checkpoints made outside ``flint-train``, or
    before it recorded environments).

    Attributes:
        preset: name of the training preset.
        config: the hyper-parameters.
        seed: the training seed (shuffling, initialisation, dropout).
        schedule: the loss weights of every epoch, ``{"beta": ..., ..., "eta": ...}`` each.
        environments: one record per run of ``flint-train`` (a resumed run adds one).
        extra: entries of the file's record this package does not read, kept as they are.
    """

    preset: str | None = None
    config: TrainingConfig | None = None
    seed: int | None = None
    schedule: tuple[Mapping[str, float], ...] | None = None
    environments: tuple[EnvironmentRecord, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    _KEYS = ("preset", "config", "seed", "schedule", "environments")

    def to_dict(self) -> dict[str, Any]:
        """The dict the checkpoint file holds (keys in the order ``flint-train`` writes them)."""
        return {
            **_present([
                ("preset", self.preset),
                ("config", None if self.config is None else self.config.to_dict()),
                ("seed", self.seed),
                ("schedule", None if self.schedule is None else [dict(weights) for weights in self.schedule]),
                ("environments", None if self.environments is None else [e.to_dict() for e in self.environments]),
            ]),
            **self.extra,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingRecord:
        known, extra = _split(data, cls._KEYS)
        config, schedule, environments = known.get("config"), known.get("schedule"), known.get("environments")
        return cls(
            preset=known.get("preset"),
            config=None if config is None else _training_config(config),
            seed=known.get("seed"),
            schedule=None if schedule is None else tuple(dict(weights) for weights in schedule),
            environments=None if environments is None else tuple(
                e if isinstance(e, EnvironmentRecord) else EnvironmentRecord.from_dict(e) for e in environments),
            extra=extra,
        )


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch (one entry of a checkpoint's ``history``).

    Attributes:
        epoch: 0-based epoch.
        weights: the loss weights in force, ``{"beta": ..., ..., "eta": ...}``.
        train_losses: mean training losses by name (:meth:`~flint_analysis.training.losses.LossTerms.names`);
            a diverged epoch may hold NaN or infinite values.
        test_accuracy_f, test_accuracy_g: test-split accuracy of f and g, in %.
        test_fidelity: share of test samples where g's class is f's, in %.
        seconds: wall time of the epoch.
        extra: entries of the file's record this package does not read, kept as they are.

    A field is ``None`` where the file's record has no such key.
    """

    epoch: int
    weights: Mapping[str, float] | None = None
    train_losses: Mapping[str, float] | None = None
    test_accuracy_f: float | None = None
    test_accuracy_g: float | None = None
    test_fidelity: float | None = None
    seconds: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    _KEYS = ("epoch", "weights", "train_losses", "test_accuracy_f", "test_accuracy_g", "test_fidelity", "seconds")

    def test_metrics(self) -> dict[str, float]:
        """The recorded ones of ``test_accuracy_f``, ``test_accuracy_g`` and ``test_fidelity``, by name."""
        return _present([("test_accuracy_f", self.test_accuracy_f), ("test_accuracy_g", self.test_accuracy_g),
                         ("test_fidelity", self.test_fidelity)])

    def to_dict(self) -> dict[str, Any]:
        """The dict the checkpoint file holds (keys in the order ``flint-train`` writes them)."""
        return {
            "epoch": self.epoch,
            **_present([
                ("weights", None if self.weights is None else dict(self.weights)),
                ("train_losses", None if self.train_losses is None else dict(self.train_losses)),
            ]),
            **self.test_metrics(),
            **_present([("seconds", self.seconds)]),
            **self.extra,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EpochRecord:
        known, extra = _split(data, cls._KEYS)
        weights, losses = known.get("weights"), known.get("train_losses")
        return cls(
            epoch=known["epoch"],
            weights=None if weights is None else dict(weights),
            train_losses=None if losses is None else dict(losses),
            test_accuracy_f=known.get("test_accuracy_f"),
            test_accuracy_g=known.get("test_accuracy_g"),
            test_fidelity=known.get("test_fidelity"),
            seconds=known.get("seconds"),
            extra=extra,
        )
