"""ExplanationRegularizedClassifier through real Trainers: gradients, DDP, precision, logging."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from lightning_xai.data import DecoyDigitsDataModule, TensorPairDataset
from lightning_xai.modules import Classifier, ExplanationRegularizedClassifier
from lightning_xai.nn import MLP
from tests.helpers import make_trainer

SIDE = 14  # decoy digits are 14x14
pytestmark = pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no")


class GradRecorder(pl.Callback):
    """Keeps the (DDP-synchronised) gradients of every optimizer step; under ddp_spawn the
    callback lives in the workers, so rank zero also writes them to ``path``."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.grads: list[dict[str, torch.Tensor]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        grads = {n: p.grad.detach().clone() for n, p in pl_module.named_parameters()}
        self.grads.append(grads)
        if self.path and trainer.is_global_zero:
            torch.save(self.grads, self.path)


def _digits(n: int = 64, seed: int = 0) -> TensorPairDataset:
    dm = DecoyDigitsDataModule(seed=seed)
    dm.setup()
    ds = dm.train_dataset
    return TensorPairDataset(ds.x[:n], ds.y[:n], ds.extra[0][:n])


def _loader(
    ds: TensorPairDataset, batch_size: int, with_mask: bool = True, zero_mask: bool = False
) -> DataLoader:
    x, y, mask = ds.tensors
    tensors = (x, y, torch.zeros_like(mask) if zero_mask else mask) if with_mask else (x, y)
    return DataLoader(TensorPairDataset(*tensors), batch_size=batch_size, shuffle=False)


def _module(
    penalty_weight: float = 50.0, lr: float = 1e-2, **kwargs
) -> ExplanationRegularizedClassifier:
    torch.manual_seed(0)
    return ExplanationRegularizedClassifier(
        MLP(SIDE * SIDE, (16,), 10), num_classes=10, penalty_weight=penalty_weight, lr=lr, **kwargs
    )


def _fit(tmp_path: Path, module: pl.LightningModule, loader: DataLoader, **kwargs) -> GradRecorder:
    recorder = GradRecorder(kwargs.pop("grad_path", None))
    callbacks = [recorder, *kwargs.pop("callbacks", [])]
    defaults = {"max_steps": 1, "limit_val_batches": 0, "callbacks": callbacks}
    trainer = make_trainer(tmp_path, **{**defaults, **kwargs})
    trainer.fit(module, train_dataloaders=loader)
    return recorder


def _manual_gradients(
    module: ExplanationRegularizedClassifier, x, y, mask
) -> dict[str, torch.Tensor]:
    """The loss written out by hand, as in the issue's formula (mean over the batch)."""
    module.zero_grad()
    x = x.clone().requires_grad_(True)
    log_probs = F.log_softmax(module(x), dim=-1)
    (g,) = torch.autograd.grad(log_probs.sum(), x, create_graph=True)
    penalty = ((mask.float() * g) ** 2).sum(dim=(1, 2, 3)).mean()
    loss = F.cross_entropy(module(x), y) + module.penalty_weight * penalty
    loss.backward()
    return {n: p.grad.clone() for n, p in module.named_parameters()}


def test_penalty_changes_the_gradients_exactly_as_the_formula_says(tmp_path) -> None:
    ds = _digits(16)
    with_penalty = _fit(tmp_path / "a", _module(), _loader(ds, 16)).grads[0]
    without = _fit(tmp_path / "b", _module(), _loader(ds, 16, with_mask=False)).grads[0]
    expected = _manual_gradients(_module(), *ds.tensors)
    for name, grad in with_penalty.items():
        torch.testing.assert_close(grad, expected[name], rtol=1e-4, atol=1e-6)
    first = "model.net.1.weight"
    assert not torch.allclose(with_penalty[first], without[first], atol=1e-4)


@pytest.mark.parametrize(("penalty_weight", "zero_mask"), [(50.0, True), (0.0, False)])
def test_all_zero_mask_gives_the_parameters_of_plain_training(
    tmp_path, penalty_weight: float, zero_mask: bool
) -> None:
    ds = _digits(64)
    regularized = _module(penalty_weight)
    torch.manual_seed(0)
    plain = Classifier(MLP(SIDE * SIDE, (16,), 10), num_classes=10, lr=1e-2)
    _fit(tmp_path / "a", regularized, _loader(ds, 16, zero_mask=zero_mask), max_steps=8)
    _fit(tmp_path / "b", plain, _loader(ds, 16, with_mask=False), max_steps=8)
    start = _module()
    for (name, p), q, p0 in zip(
        regularized.named_parameters(), plain.parameters(), start.parameters()
    ):
        assert not torch.equal(p, p0), name  # training moved them
        assert torch.equal(p, q), name  # bit for bit


def test_accumulated_gradients_equal_one_large_batch(tmp_path) -> None:
    ds = _digits(16)
    accumulated = _fit(tmp_path / "a", _module(), _loader(ds, 8), accumulate_grad_batches=2).grads[
        0
    ]
    large = _fit(tmp_path / "b", _module(), _loader(ds, 16)).grads[0]
    for name, grad in accumulated.items():
        torch.testing.assert_close(grad, large[name], rtol=1e-4, atol=1e-6)


def test_gradient_clipping_bounds_the_step(tmp_path) -> None:
    ds = _digits(16)
    moves = {}
    for clip in (None, 0.01):
        module = _module(lr=1.0, optimizer="sgd")
        before = torch.cat([p.detach().flatten().clone() for p in module.parameters()])
        _fit(tmp_path / str(clip), module, _loader(ds, 16), gradient_clip_val=clip)
        after = torch.cat([p.detach().flatten() for p in module.parameters()])
        moves[clip] = (after - before).norm().item()
    assert moves[0.01] == pytest.approx(0.01, rel=1e-3)
    assert moves[None] > 0.1


def test_bf16_mixed_precision_trains_the_penalty(tmp_path) -> None:
    ds = _digits(32)
    bf16 = _fit(tmp_path / "a", _module(), _loader(ds, 32), precision="bf16-mixed").grads[0]
    fp32 = _fit(tmp_path / "b", _module(), _loader(ds, 32)).grads[0]
    plain = _fit(tmp_path / "c", _module(), _loader(ds, 32, with_mask=False)).grads[0]
    name = "model.net.1.weight"
    penalty_part_bf16 = (bf16[name] - plain[name]).flatten()
    penalty_part_fp32 = (fp32[name] - plain[name]).flatten()
    assert penalty_part_fp32.norm() > 1e-3
    assert F.cosine_similarity(penalty_part_bf16, penalty_part_fp32, dim=0) > 0.9


@pytest.mark.ddp
def test_ddp_gradients_equal_single_process(tmp_path) -> None:
    ds = _digits(8)
    path = str(tmp_path / "ddp_grads.pt")
    _fit(
        tmp_path / "ddp",
        _module(),
        _loader(ds, 4),
        grad_path=path,
        strategy="ddp_spawn",
        devices=2,
        gradient_clip_val=1.0,
    )
    ddp = torch.load(path, weights_only=True)[0]
    # DistributedSampler gives rank 0 samples 0, 2, 4, 6 and rank 1 samples 1, 3, 5, 7.
    single = _fit(tmp_path / "single", _module(), _loader(ds, 8)).grads[0]
    for name, grad in single.items():
        torch.testing.assert_close(ddp[name], grad, rtol=1e-4, atol=1e-6)


def test_validate_and_test_under_a_default_trainer_log_the_score(tmp_path, tb_events) -> None:
    dm = DecoyDigitsDataModule(batch_size=32)
    module = _module()
    trainer = make_trainer(tmp_path)  # inference_mode=True, the default
    trainer.fit(module, datamodule=dm)
    trainer.validate(module, datamodule=dm)
    trainer.test(module, datamodule=dm)
    events = tb_events(tmp_path)
    for stage in ("train", "val", "test"):
        for term in ("loss", "ce", "penalty", "acc", "right_reasons"):
            values = [e.value for e in events.Scalars(f"{stage}/{term}")]
            assert values and all(v == v for v in values), (stage, term)  # present, not NaN
        assert all(0.0 <= e.value <= 1.0 for e in events.Scalars(f"{stage}/right_reasons"))
    val = [e.value for e in events.Scalars("val/right_reasons")]
    assert len(val) == 2  # during fit (no_grad) and in validate (inference_mode)


def test_plain_batches_log_no_penalty(tmp_path, tb_events) -> None:
    ds = _digits(32)
    _fit(tmp_path, _module(), _loader(ds, 16, with_mask=False), max_steps=2)
    tags = tb_events(tmp_path).tags()["scalars"]
    assert "train/ce" in tags and "train/penalty" not in tags and "train/right_reasons" not in tags


def test_hyperparameters_are_saved() -> None:
    module = _module(penalty_weight=3.0, gradient_method="per_sample")
    assert module.hparams.penalty_weight == 3.0
    assert module.hparams.gradient_method == "per_sample"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"penalty_weight": -1.0}, ValueError, r"`penalty_weight` must be a number >= 0, got -1.0"),
        ({"penalty_weight": float("nan")}, ValueError, "`penalty_weight`"),
        ({"optimizer": "lbfgs"}, ValueError, r"`optimizer` must be one of.*'lbfgs'"),
        ({"gradient_method": "exact"}, ValueError, "`gradient_method`.*'exact'"),
        ({"model": "mlp"}, TypeError, "`model` must be an nn.Module"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs: dict, error: type, match: str) -> None:
    args = {"model": MLP(4, (4,), 2), "num_classes": 2, **kwargs}
    with pytest.raises(error, match=match):
        ExplanationRegularizedClassifier(**args)


@pytest.mark.parametrize(
    ("mask", "error", "match"),
    [
        (torch.ones(16, 1, SIDE, SIDE - 1, dtype=torch.bool), ValueError, "`mask` has shape"),
        (torch.ones(16, 1, SIDE, SIDE, dtype=torch.long), TypeError, r"mask.bool\(\)"),
    ],
)
def test_bad_masks_fail_before_the_forward(tmp_path, mask, error, match) -> None:
    ds = _digits(16)
    loader = DataLoader(TensorPairDataset(ds.x, ds.y, mask), batch_size=16)
    with pytest.raises(error, match=match):
        _fit(tmp_path, _module(), loader)
