"""SimplEx, latent nearest neighbours and label-free TracIn on users' models and batches:
``encode`` is what is explained, ``encoder=`` chooses another representation, and dict
batches, two-input models and token ids go through the adapter; brute-force references."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_xai.influence import Checkpoint, LabelFreeTracIn, LatentNearestNeighbours, SimplEx
from lightning_xai.influence.latent import encoded_features, resolve_encoder
from lightning_xai.modules import AutoEncoder
from lightning_xai.utilities import BatchAdapter
from tests.helpers import make_trainer, tiny_digits
from tests.user_models import DictDataset, HFTextClassifier, TwoInputNet, token_data, two_input_data


def _brute_knn(test: torch.Tensor, train: torch.Tensor, k: int) -> torch.Tensor:
    """k-NN by a Python loop over pairs."""
    rows = []
    for t in test:
        d = torch.tensor([float((t - r).pow(2).sum().sqrt()) for r in train])
        rows.append(d.argsort(stable=True)[:k])
    return torch.stack(rows)


@pytest.fixture(scope="module")
def fitted_autoencoder(tmp_path_factory) -> tuple[AutoEncoder, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model, dm = AutoEncoder(latent_dim=3, lr=3e-3), tiny_digits(batch_size=64)
    trainer = make_trainer(
        tmp_path_factory.mktemp("ae"), max_epochs=2, limit_train_batches=None, limit_val_batches=0
    )
    trainer.fit(model, dm)
    return model.eval(), dm.train_dataset.x[:120], dm.test_dataset.x[:12]


def test_an_autoencoder_is_explained_by_its_code_not_its_reconstruction(fitted_autoencoder):
    model, train, test = fitted_autoencoder
    top = LatentNearestNeighbours(model).top_k(test, train, k=5)
    with torch.no_grad():
        code_test, code_train = model.encode(test), model.encode(train)
        recon = torch.cdist(model(test).flatten(1).double(), model(train).flatten(1).double())
    assert torch.equal(top.indices, _brute_knn(code_test, code_train, 5))
    # ranking by reconstructions would pick clearly different (closer-reconstructed) examples
    nearest_recon = recon.sort(dim=1).values[:, :5]
    assert float((recon.gather(1, top.indices) - nearest_recon).sum()) > 1e-2
    # encoder= overrides: the reconstruction by method name, the code by submodule path
    by_forward = LatentNearestNeighbours(model, encoder="forward").top_k(test, train, k=5)
    assert torch.allclose(recon.gather(1, by_forward.indices), nearest_recon, atol=5e-4)
    by_path = LatentNearestNeighbours(model, encoder="encoder").top_k(test, train, k=5)
    assert torch.equal(by_path.indices, top.indices)


def test_every_data_form_gives_the_same_scores(fitted_autoencoder):
    model, train, test = fitted_autoencoder
    labels = torch.arange(len(train)) % 10
    reference = SimplEx(model, batch_size=7).attribute(test, train)
    dict_rows = DictDataset({"pixel_values": train, "labels": labels})
    for corpus in (
        (train, labels),  # a collated (x, y) batch
        {"pixel_values": train, "labels": labels},  # a dict batch
        TensorDataset(train, labels),
        DataLoader(dict_rows, batch_size=16),
    ):
        got = SimplEx(model, batch_size=7).attribute(test, corpus)
        assert torch.allclose(got, reference, atol=1e-5)
    assert model.training is False


def test_two_input_model_encodes_both_inputs(tmp_path):
    torch.manual_seed(0)
    data = two_input_data(n=40)
    image, features, _ = data.tensors
    model = TwoInputNet()
    make_trainer(tmp_path, max_epochs=1, limit_val_batches=0, logger=False).fit(
        model, DataLoader(data, batch_size=8)
    )
    model.eval()
    head = nn.Identity()
    model.head = head  # the 16 features before the last layer are the representation
    test = tuple(t[:5] for t in data.tensors)
    top = LatentNearestNeighbours(model).top_k(test, data, k=4)
    with torch.no_grad():
        expected = _brute_knn(model(image[:5], features[:5]), model(image, features), 4)
        image_only = _brute_knn(model(image[:5]), model(image), 4)
    assert torch.equal(top.indices, expected)
    assert not torch.equal(top.indices, image_only)  # the second input was passed through
    weights = SimplEx(model, corpus_top_k=None).attribute(test, data)
    assert torch.allclose(weights.sum(1), torch.ones(5), atol=1e-5)


def test_token_ids_with_attention_mask_through_a_submodule_encoder():
    model = HFTextClassifier().eval()
    columns = token_data(n=30)
    rows = DictDataset(columns)
    test = {k: v[:4] for k, v in columns.items()}
    knn = LatentNearestNeighbours(model, encoder="bert.bert")
    top = knn.top_k(test, DataLoader(rows, batch_size=8), k=3)
    with torch.no_grad():
        code = model.bert.bert(
            input_ids=columns["input_ids"], attention_mask=columns["attention_mask"]
        ).pooler_output
        unmasked = model.bert.bert(input_ids=columns["input_ids"]).pooler_output
    assert torch.equal(top.indices, _brute_knn(code[:4], code, 3))
    assert not torch.equal(top.indices, _brute_knn(unmasked[:4], unmasked, 3))


def test_label_free_tracin_reads_batches_and_chooses_parameters_by_encoder():
    model = AutoEncoder(latent_dim=3)
    ckpt = [Checkpoint.from_module(model, lr=0.5)]
    x_train, x_test = torch.rand(6, 1, 8, 8), torch.rand(2, 1, 8, 8)
    plain = LabelFreeTracIn(model, ckpt, show_progress=False).attribute(x_test, x_train)
    as_dicts = LabelFreeTracIn(
        model, ckpt, show_progress=False, adapter=BatchAdapter(inputs="image")
    ).attribute(
        {"image": x_test, "labels": torch.zeros(2)},
        DictDataset({"image": x_train, "labels": torch.zeros(6)}),
    )
    assert torch.allclose(plain, as_dicts, rtol=1e-4, atol=1e-7)
    decoder = LabelFreeTracIn(model, ckpt, show_progress=False, encoder="decoder")
    assert all(name.startswith("decoder.") for name in decoder.names)
    assert not torch.allclose(decoder.attribute(x_test, x_train), plain)


def test_encoder_resolution_and_errors():
    ae = AutoEncoder(latent_dim=2)
    assert resolve_encoder(ae) == ae.encode
    assert resolve_encoder(ae, "encoder.head") is ae.encoder.head
    assert resolve_encoder(nn.Linear(2, 2)).__class__ is nn.Linear
    assert resolve_encoder(None, "torch.flatten") is torch.flatten
    with pytest.raises(ValueError, match="encoder='backbone'.*neither a method nor a submodule"):
        resolve_encoder(ae, "backbone")
    with pytest.raises(TypeError, match="string 'encode'"):
        SimplEx("encode")
    with pytest.raises(TypeError, match="returned|must return"):
        encoded_features("text")
    with pytest.raises(ValueError, match="not a submodule"):
        LabelFreeTracIn(ae, [Checkpoint.from_module(ae, lr=1.0)], encoder="encode")
    with pytest.raises(ValueError, match="adapter explains 2"):
        LabelFreeTracIn(
            ae, [Checkpoint.from_module(ae, lr=1.0)], adapter=BatchAdapter(inputs=(0, 1))
        ).attribute((torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)), torch.rand(3, 1, 8, 8))
