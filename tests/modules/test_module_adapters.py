"""The LightningModules read batches through a BatchAdapter given as a hyperparameter: dict
batches train, the adapter survives a checkpoint, and labels are checked before use."""

from __future__ import annotations

import pytest
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from lightning_xai.modules import AutoEncoder, Classifier, LogicExplainer
from lightning_xai.utilities import BatchAdapter
from tests.helpers import TinyCNN, make_trainer
from tests.user_models import DictDataset


def image_columns(n: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"image": torch.rand(n, 1, 8, 8, generator=g), "digit": torch.arange(n) % 10}


def pick_image(batch: dict) -> torch.Tensor:
    """A module-level callable: saved by its import path."""
    return batch["image"]


def test_autoencoder_trains_on_dict_batches_and_reloads_its_adapter(tmp_path) -> None:
    torch.manual_seed(0)
    rows = DataLoader(DictDataset(image_columns()), batch_size=8)
    model = AutoEncoder(latent_dim=3, adapter={"inputs": "image", "labels": "digit"})
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = make_trainer(tmp_path, callbacks=[ckpt], enable_checkpointing=True)
    before = [p.detach().clone() for p in model.parameters()]
    trainer.fit(model, rows, rows)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert trainer.callback_metrics["val/loss"] > 0
    reloaded = AutoEncoder.load_from_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert reloaded.adapter.inputs == "image" and reloaded.adapter.labels == "digit"
    x = image_columns(3)["image"]
    assert torch.allclose(reloaded.predict_step({"image": x}, 0), model.eval().encode(x))


def test_adapter_hyperparameters_are_plain_values() -> None:
    assert AutoEncoder().hparams.adapter is None  # the default adapter
    by_path = AutoEncoder(adapter=BatchAdapter(inputs=pick_image, labels=None))
    assert by_path.hparams.adapter["inputs"] == f"{__name__}.pick_image"
    with pytest.warns(UserWarning, match="cannot be saved with the hyperparameters"):
        lam = AutoEncoder(adapter=BatchAdapter(inputs=lambda b: b["image"]))
    assert "adapter" not in lam.hparams
    with pytest.raises(ValueError, match="unknown arguments"):
        AutoEncoder(adapter={"input": "image"})
    with pytest.raises(TypeError, match="BatchAdapter"):
        AutoEncoder(adapter="image")
    with pytest.raises(ValueError, match="reads one input"):
        AutoEncoder(adapter={"inputs": (0, 1)})._inputs((torch.rand(2, 1, 8, 8),) * 2)


def test_classifier_labels_from_the_adapter_and_checked(tmp_path) -> None:
    rows = DataLoader(DictDataset(image_columns()), batch_size=8)
    model = Classifier(TinyCNN(), adapter={"inputs": "image", "labels": "digit"})
    make_trainer(tmp_path, limit_val_batches=0, logger=False).fit(model, rows)
    assert model.predict_step({"image": torch.rand(2, 1, 8, 8)}, 0).shape == (2,)
    bad = DataLoader(
        DictDataset({**image_columns(), "digit": torch.arange(32) % 10 + 5}), batch_size=8
    )
    fresh = Classifier(TinyCNN(), adapter={"inputs": "image", "labels": "digit"})
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\]"):
        make_trainer(tmp_path, limit_val_batches=0, logger=False).fit(fresh, bad)
    unlabelled = DataLoader(DictDataset({"image": image_columns()["image"]}), batch_size=8)
    with pytest.raises(ValueError, match="found none"):
        make_trainer(tmp_path, limit_val_batches=0, logger=False).fit(
            Classifier(TinyCNN(), adapter={"inputs": "image"}), unlabelled
        )


def test_logic_explainer_multilabel_targets_through_the_adapter(tmp_path) -> None:
    c = torch.randint(0, 2, (64, 3)).float()
    targets = torch.stack([c[:, 0], c[:, 1] * c[:, 2]], dim=1)
    rows = DataLoader(DictDataset({"concepts": c, "labels": targets}), batch_size=16)
    module = LogicExplainer(3, 2, task="multilabel", adapter={"inputs": "concepts"})
    make_trainer(tmp_path, limit_val_batches=0, logger=False).fit(module, rows)
    assert module.predict_step({"concepts": c[:4]}, 0).shape == (4, 2)


def test_classifier_passes_the_backbones_keyword_arguments() -> None:
    """A text backbone ``forward(input_ids, attention_mask=None)`` inside ``Classifier`` gets its
    attention mask from a dict batch: the module reports the backbone's signature."""
    from torch.utils.data._utils.collate import default_collate

    from lightning_xai.nn import TokenClassifier
    from tests.user_models import token_data

    module = Classifier(model=TokenClassifier(vocab_size=20, num_classes=2), num_classes=2)
    ds = DictDataset(token_data(n=4))
    batch = default_collate([ds[i] for i in range(4)])
    _, kwargs = module.adapter.split(batch, module).arguments()
    assert set(kwargs) == {"input_ids", "attention_mask"}
    module.eval()
    with torch.no_grad():
        expected = module.model(batch["input_ids"], attention_mask=batch["attention_mask"])
        unmasked = module.model(batch["input_ids"])
        assert torch.allclose(module.adapter.split(batch, module).call(module), expected)
        assert not torch.allclose(expected, unmasked)  # the mask matters: it is not dropped
