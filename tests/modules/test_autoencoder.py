"""AutoEncoder and VariationalAutoEncoder: shapes, losses, pretexts, training through a Trainer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_xai.modules import AutoEncoder, VariationalAutoEncoder
from lightning_xai.nn.autoencoders import gaussian_kl, perturb
from tests.helpers import make_trainer, tiny_digits


@pytest.mark.parametrize("cls", [AutoEncoder, VariationalAutoEncoder])
def test_default_nets_fit_digits_shapes(cls) -> None:
    model = cls(latent_dim=6).eval()
    x = torch.rand(5, 1, 8, 8)
    assert model.encode(x).shape == (5, 6)
    recon = model(x)
    assert recon.shape == x.shape and bool(((recon >= 0) & (recon <= 1)).all())
    assert model.per_sample_loss(x).shape == (5,)
    assert torch.equal(model.encode(x), model.encode(x))  # deterministic, VAE included


def test_per_sample_loss_is_the_summed_reconstruction_error() -> None:
    model = AutoEncoder(latent_dim=4, loss="mse")
    x = torch.rand(3, 1, 8, 8)
    expected = ((model(x) - x) ** 2).flatten(1).sum(1)
    assert torch.allclose(model.per_sample_loss(x), expected, atol=1e-6)
    bce = AutoEncoder(latent_dim=4, loss="bce")
    expected = F.binary_cross_entropy(bce(x), x, reduction="none").flatten(1).sum(1)
    assert torch.allclose(bce.per_sample_loss(x), expected, rtol=1e-4)


def test_vae_loss_adds_beta_times_kl_of_the_mean_code() -> None:
    vae = VariationalAutoEncoder(latent_dim=3, beta=4.0, loss="mse")
    x = torch.rand(4, 1, 8, 8)
    mu, logvar = vae.encode_distribution(x)
    recon = ((torch.sigmoid(vae.decoder(mu)) - x) ** 2).flatten(1).sum(1)
    assert torch.allclose(vae.per_sample_loss(x), recon + 4.0 * gaussian_kl(mu, logvar), atol=1e-5)


def test_pretexts_perturb_the_input_only() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 8, 8) + 0.1
    noisy = perturb(x, "denoise", noise_level=0.3, generator=g)
    masked = perturb(x, "mask", mask_proportion=0.5, generator=g)
    assert not torch.allclose(noisy, x) and 0.2 < float((noisy - x).std()) < 0.4
    zeroed = masked == 0
    assert 0.3 < float(zeroed.float().mean()) < 0.7 and torch.equal(masked[~zeroed], x[~zeroed])
    assert perturb(x, None) is x


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(latent_dim=0), "latent_dim"),
        (dict(loss="l1"), "loss"),
        (dict(pretext="rotate"), "pretext"),
        (dict(mask_proportion=1.0), "mask_proportion"),
        (dict(noise_level=-1.0), "noise_level"),
        (dict(lr=0.0), "lr"),
        (dict(loss="bce", sigmoid=False), "sigmoid"),
    ],
)
def test_bad_arguments_raise_early(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        AutoEncoder(**kwargs)


def test_vae_checks_beta_and_encoder_width() -> None:
    with pytest.raises(ValueError, match="beta"):
        VariationalAutoEncoder(beta=-1.0)
    vae = VariationalAutoEncoder(
        encoder=nn.Sequential(nn.Flatten(), nn.Linear(64, 5)), latent_dim=5
    )
    with pytest.raises(ValueError, match="2 \\* latent_dim"):
        vae.encode(torch.rand(2, 1, 8, 8))


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (AutoEncoder, {}),
        (AutoEncoder, {"pretext": "denoise"}),
        (AutoEncoder, {"pretext": "mask"}),
        (VariationalAutoEncoder, {"beta": 0.5}),
    ],
)
def test_training_lowers_the_validation_loss(tmp_path, tb_events, cls, kwargs) -> None:
    torch.manual_seed(0)
    model = cls(latent_dim=8, lr=3e-3, **kwargs)
    dm = tiny_digits(batch_size=64)
    trainer = make_trainer(tmp_path, max_epochs=2, limit_train_batches=10, limit_val_batches=3)
    before = trainer.validate(model, dm, verbose=False)[0]["val/loss"]
    trainer.fit(model, dm)
    after = trainer.validate(model, dm, verbose=False)[0]["val/loss"]
    assert after < 0.8 * before
    events = tb_events(tmp_path)
    assert len(events.Scalars("train/loss")) >= 1
    if cls is VariationalAutoEncoder:
        assert events.Scalars("val/kl") and events.Scalars("val/recon")


def test_unlabelled_batches_train_and_labels_are_ignored(tmp_path) -> None:
    x = torch.rand(64, 1, 8, 8)
    torch.manual_seed(1)
    plain = AutoEncoder(latent_dim=4)
    torch.manual_seed(1)
    labelled = AutoEncoder(latent_dim=4)
    for model, data in ((plain, x), (labelled, TensorDataset(x, torch.randint(0, 10, (64,))))):
        torch.manual_seed(2)
        make_trainer(tmp_path, max_epochs=1, limit_val_batches=0, logger=False).fit(
            model, DataLoader(data, batch_size=16)
        )
    for p, q in zip(plain.parameters(), labelled.parameters()):
        assert torch.allclose(p, q)
    assert plain.predict_step(x[:3], 0).shape == (3, 4)


def test_hyperparameters_are_saved_without_the_networks() -> None:
    model = AutoEncoder(
        encoder=nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), latent_dim=3, pretext="mask"
    )
    assert model.hparams.pretext == "mask" and "encoder" not in model.hparams
