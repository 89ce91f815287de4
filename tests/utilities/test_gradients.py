"""The gradient context works wherever Lightning disables gradients."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from captum.attr import Saliency
from pytorch_lightning.callbacks import Callback

from lightning_xai.utilities import grad_enabled
from tests.helpers import TinyClassifier, make_trainer, tiny_digits


def _saliency_and_manual(module: pl.LightningModule, x: torch.Tensor, y: torch.Tensor) -> tuple:
    """Saliency through captum (input and target used directly) and by hand."""
    with grad_enabled(x, y) as (x, y):
        captum_attr = Saliency(module).attribute(x, target=y, abs=False)
        x = x.clone().requires_grad_(True)
        logits = module(x)
        (manual,) = torch.autograd.grad(logits.gather(1, y[:, None]).sum(), x)
        # Combine an inference-made target with a differentiable result.
        loss = torch.nn.functional.cross_entropy(module(x), y)
        (loss_grad,) = torch.autograd.grad(loss, x)
    return captum_attr, manual, loss_grad


class GradModule(TinyClassifier):
    def __init__(self) -> None:
        super().__init__()
        self.checked: list[tuple[str, bool]] = []

    def _check(self, batch: tuple, where: str) -> None:
        x, y = batch
        ambient = torch.is_inference_mode_enabled() or not torch.is_grad_enabled()
        captum_attr, manual, loss_grad = _saliency_and_manual(self, x, y)
        assert torch.allclose(captum_attr, manual, atol=1e-6)
        assert loss_grad.abs().sum() > 0
        self.checked.append((where, ambient))

    def validation_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        self._check(batch, "validation_step")
        return super().validation_step(batch, batch_idx)

    def test_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        self._check(batch, "test_step")
        return super().test_step(batch, batch_idx)


class EpochEndGrad(Callback):
    def __init__(self) -> None:
        self.checked: list[str] = []

    def _check(self, trainer: pl.Trainer, pl_module: pl.LightningModule, where: str) -> None:
        if trainer.sanity_checking:
            return
        loader = trainer.test_dataloaders if where == "test" else trainer.val_dataloaders
        x, y = next(iter(loader))
        # Make the tensors in the ambient mode, as a hook would receive them.
        x, y = x * 1, y * 1
        captum_attr, manual, _ = _saliency_and_manual(pl_module, x, y)
        assert torch.allclose(captum_attr, manual, atol=1e-6)
        self.checked.append(where)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer, pl_module, "test")


@pytest.mark.parametrize("entry", ["fit", "validate", "test"])
def test_grad_enabled_in_steps_and_epoch_end_hooks(tmp_path, entry: str) -> None:
    module, callback = GradModule(), EpochEndGrad()
    trainer = make_trainer(tmp_path, callbacks=[callback], num_sanity_val_steps=0)
    assert (
        trainer.test_loop.inference_mode and trainer.validate_loop.inference_mode
    )  # default Trainer
    getattr(trainer, entry)(module, datamodule=tiny_digits())
    where = "test_step" if entry == "test" else "validation_step"
    assert [w for w, _ in module.checked] == [where] * 2
    # Gradients were not available in the ambient mode: the context made them so.
    assert all(ambient for _, ambient in module.checked)
    assert callback.checked == ["test" if entry == "test" else "val"]


def test_plain_autograd_fails_without_the_context() -> None:
    """Guard: the situation the context exists for is real in this torch version."""
    model = torch.nn.Linear(3, 2)
    with torch.inference_mode():
        x, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
        with torch.enable_grad():
            with pytest.raises(RuntimeError):
                Saliency(model).attribute(x, target=y)
    with torch.inference_mode(False), torch.enable_grad():
        with pytest.raises(RuntimeError, match="[Ii]nference"):
            torch.nn.functional.cross_entropy(model(x.requires_grad_(False)).exp(), y).backward()


def test_to_autograd_handles_nested_structures() -> None:
    with torch.inference_mode():
        batch = {"x": torch.ones(2), "pair": (torch.zeros(1), [torch.ones(1)]), "n": 3}
    with grad_enabled(batch) as (batch,):
        assert not batch["x"].is_inference()
        assert not batch["pair"][0].is_inference()
        assert not batch["pair"][1][0].is_inference()
        assert batch["n"] == 3
    plain = torch.ones(2)
    with grad_enabled(plain) as (same,):
        assert same is plain  # normal tensors are not copied
