"""A bad-input table over the influence entry points: each bad value ends in the documented
error type, before any work, with a message that names the argument."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch import nn

from lightning_xai.callbacks import InfluenceLogger, TracInCheckpoint
from lightning_xai.influence import Checkpoint, CheckpointStore, TracIn, per_sample_grads
from lightning_xai.influence.errors import NonFiniteError

NAN, INF = float("nan"), float("inf")


def ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y, reduction="none")


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def ckpts() -> list[Checkpoint]:
    return [Checkpoint.from_module(net(), 0.1)]


def xy(n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, 3), torch.arange(n) % 2


def tracin(**kwargs: Any) -> TracIn:
    args: dict[str, Any] = dict(model=net(), checkpoints=ckpts(), loss_fn=ce, show_progress=False)
    args.update(kwargs)
    return TracIn(**args)


def with_nan(row: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = xy(6)
    x[row, 1] = NAN
    return x, y


# (entry point, call, error type, words the message must contain)
TABLE: list[tuple[str, Any, type[Exception], tuple[str, ...]]] = [
    # ------------------------------------------------------------------ TracIn constructor
    ("TracIn", lambda: tracin(model="net"), TypeError, ("`model`",)),
    ("TracIn", lambda: tracin(loss_fn=3), TypeError, ("`loss_fn`",)),
    ("TracIn", lambda: tracin(batch_size=0), ValueError, ("`batch_size`", "0")),
    ("TracIn", lambda: tracin(batch_size=2.5), ValueError, ("`batch_size`",)),
    ("TracIn", lambda: tracin(projection_dim=-1), ValueError, ("`projection_dim`",)),
    ("TracIn", lambda: tracin(targets="y"), ValueError, ("`targets`", "'y'")),
    ("TracIn", lambda: tracin(method="fast"), ValueError, ("`method`",)),
    ("TracIn", lambda: tracin(seed="1"), TypeError, ("`seed`",)),
    ("TracIn", lambda: tracin(normalize="yes"), TypeError, ("`normalize`",)),
    ("TracIn", lambda: tracin(show_progress=None), TypeError, ("`show_progress`",)),
    ("TracIn", lambda: tracin(device="gpu0"), ValueError, ("`device`", "gpu0")),
    ("TracIn", lambda: tracin(adapter="x"), TypeError, ("`adapter`",)),
    ("TracIn", lambda: tracin(parameters="nope.*"), ValueError, ("`parameters`", "nope")),
    ("TracIn", lambda: tracin(checkpoints=[]), ValueError, ("No checkpoints", "`checkpoints`")),
    ("TracIn", lambda: tracin(checkpoints=3), TypeError, ("`checkpoints`",)),
    ("TracIn", lambda: tracin(checkpoints=[3]), TypeError, ("`checkpoints`",)),
    ("TracIn", lambda: tracin(checkpoints=["/no/such.pt"]), ValueError, ("/no/such.pt",)),
    (
        "TracIn",
        lambda: tracin(checkpoints=[Checkpoint.from_module(net(), NAN)]).self_influence(xy()),
        NonFiniteError,
        ("checkpoint #0", "lr=nan"),
    ),
    # ------------------------------------------------------------------ TracIn data
    (
        "TracIn.self_influence",
        lambda: tracin().self_influence(with_nan(4)),
        NonFiniteError,
        ("`data` row 4",),
    ),
    (
        "TracIn.influence",
        lambda: tracin().influence(with_nan(2), xy()),
        NonFiniteError,
        ("`test_data` row 2",),
    ),
    (
        "TracIn.influence",
        lambda: tracin().influence(xy(), with_nan(5)),
        NonFiniteError,
        ("`train_data` row 5",),
    ),
    (
        "TracIn.self_influence",
        lambda: tracin().self_influence((torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))),
        ValueError,
        ("`data`", "empty"),
    ),
    (
        "TracIn.self_influence",
        lambda: tracin().self_influence(torch.tensor(1.0)),
        ValueError,
        ("`data`",),
    ),
    ("TracIn.self_influence", lambda: tracin().self_influence(42), TypeError, ("`data`",)),
    (
        "TracIn.self_influence",
        lambda: tracin().self_influence((torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))),
        ValueError,
        ("labels", "[0, 1]"),
    ),
    ("TracIn.top_k", lambda: tracin().top_k(xy(), xy(), k=0), ValueError, ("`k`",)),
    ("TracIn.top_k", lambda: tracin().top_k(xy(), xy(), k=9), ValueError, ("`k`", "9")),
    # ------------------------------------------------------------------ per_sample_grads
    (
        "per_sample_grads",
        lambda: per_sample_grads(net(), with_nan(3), ce),
        NonFiniteError,
        ("`batch` row 3",),
    ),
    (
        "per_sample_grads",
        lambda: per_sample_grads(net(), (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)), ce),
        ValueError,
        ("`batch`", "empty"),
    ),
    (
        "per_sample_grads",
        lambda: per_sample_grads(net(), xy(), ce, targets="z"),
        ValueError,
        ("`targets`",),
    ),
    (
        "per_sample_grads",
        lambda: per_sample_grads(net(), xy(), ce, parameters=3),
        TypeError,
        ("`parameters`",),
    ),
    (
        "per_sample_grads",
        lambda: per_sample_grads(net(), xy(), lambda o, y: F.cross_entropy(o, y)),
        ValueError,
        ("`loss_fn`", "per sample"),
    ),
    (
        "per_sample_grads",
        lambda: per_sample_grads(net(), xy(), ce, values={"0.weight": torch.full((4, 3), INF)}),
        NonFiniteError,
        ("rows", "`values`"),
    ),
    # ------------------------------------------------------------------ TracInCheckpoint
    (
        "TracInCheckpoint",
        lambda: TracInCheckpoint(every_n_epochs=0),
        MisconfigurationException,
        ("`every_n_epochs`",),
    ),
    (
        "TracInCheckpoint",
        lambda: TracInCheckpoint(dirpath=3),
        MisconfigurationException,
        ("`dirpath`", "3"),
    ),
    (
        "TracInCheckpoint",
        lambda: TracInCheckpoint(dirpath=" "),
        MisconfigurationException,
        ("`dirpath`",),
    ),
    (
        "TracInCheckpoint",
        lambda: TracInCheckpoint(parameters=[1]),
        MisconfigurationException,
        ("`parameters`",),
    ),
    (
        "TracInCheckpoint",
        lambda: TracInCheckpoint(overwrite="yes"),
        MisconfigurationException,
        ("`overwrite`",),
    ),
    (
        "TracInCheckpoint",
        lambda: TracInCheckpoint(strict=1),
        MisconfigurationException,
        ("`strict`",),
    ),
    (
        "TracInCheckpoint",
        lambda: TracInCheckpoint(name="a/b"),
        MisconfigurationException,
        ("`name`",),
    ),
    # ------------------------------------------------------------------ InfluenceLogger
    ("InfluenceLogger", lambda: InfluenceLogger(k=0), MisconfigurationException, ("`k`",)),
    ("InfluenceLogger", lambda: InfluenceLogger(top_n=-2), MisconfigurationException, ("`top_n`",)),
    (
        "InfluenceLogger",
        lambda: InfluenceLogger(batch_size=0),
        MisconfigurationException,
        ("`batch_size`",),
    ),
    (
        "InfluenceLogger",
        lambda: InfluenceLogger(num_samples=0),
        MisconfigurationException,
        ("`num_samples`",),
    ),
    (
        "InfluenceLogger",
        lambda: InfluenceLogger(projection_dim=0),
        MisconfigurationException,
        ("`projection_dim`",),
    ),
    (
        "InfluenceLogger",
        lambda: InfluenceLogger(targets="x"),
        MisconfigurationException,
        ("`targets`",),
    ),
    (
        "InfluenceLogger",
        lambda: InfluenceLogger(loss_fn=3),
        MisconfigurationException,
        ("`loss_fn`",),
    ),
    (
        "InfluenceLogger",
        lambda: InfluenceLogger(loss_fn="no.such.loss"),
        MisconfigurationException,
        ("`loss_fn`",),
    ),
    (
        "InfluenceLogger",
        lambda: InfluenceLogger(checkpoints=5),
        MisconfigurationException,
        ("`checkpoints`",),
    ),
    (
        "InfluenceLogger",
        lambda: InfluenceLogger(normalize="no"),
        MisconfigurationException,
        ("`normalize`",),
    ),
    (
        "InfluenceLogger",
        lambda: InfluenceLogger(strict="no"),
        MisconfigurationException,
        ("`strict`",),
    ),
    ("InfluenceLogger", lambda: InfluenceLogger(seed=1.5), MisconfigurationException, ("`seed`",)),
    (
        "InfluenceLogger",
        lambda: InfluenceLogger(adapter="x"),
        MisconfigurationException,
        ("`adapter`",),
    ),
    (
        "InfluenceLogger",
        lambda: InfluenceLogger(train_data=[1, 2]),
        MisconfigurationException,
        ("`train_data`",),
    ),
    (
        "InfluenceLogger",
        lambda: InfluenceLogger(kind="video"),
        MisconfigurationException,
        ("`kind`",),
    ),
    (
        "InfluenceLogger",
        lambda: InfluenceLogger(vocabulary=3),
        MisconfigurationException,
        ("`vocabulary`",),
    ),
    (
        "InfluenceLogger",
        lambda: InfluenceLogger(every_n_epochs=-1),
        MisconfigurationException,
        ("`every_n_epochs`",),
    ),
    (
        "InfluenceLogger",
        lambda: InfluenceLogger(stages=("predict",)),
        MisconfigurationException,
        ("`stages`",),
    ),
    # ------------------------------------------------------------------ CheckpointStore
    ("CheckpointStore", lambda: CheckpointStore(3), TypeError, ("`dirpath`",)),
    ("CheckpointStore", lambda: CheckpointStore(""), TypeError, ("`dirpath`",)),
    ("CheckpointStore", lambda: CheckpointStore("/tmp", entries=[1]), TypeError, ("`entries`",)),
]


@pytest.mark.parametrize(
    ("entry", "call", "error", "words"),
    TABLE,
    ids=[f"{i:02d}-{row[0]}-{row[3][0]}" for i, row in enumerate(TABLE)],
)
def test_bad_input_is_refused_naming_the_argument(entry, call, error, words) -> None:
    with pytest.raises(error) as info:
        call()
    assert type(info.value) is error or issubclass(type(info.value), error)
    for word in words:
        assert word in str(info.value), f"{entry}: {word!r} not in {info.value}"


def test_the_table_covers_every_entry_point() -> None:
    assert {row[0].split(".")[0] for row in TABLE} == {
        "TracIn",
        "per_sample_grads",
        "TracInCheckpoint",
        "InfluenceLogger",
        "CheckpointStore",
    }
    assert len(TABLE) >= 50


def test_store_path_that_is_a_file_names_it(tmp_path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        CheckpointStore(tmp_path / "f")
