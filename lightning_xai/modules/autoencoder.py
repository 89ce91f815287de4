"""Autoencoders (plain, denoising, inpainting) and a beta-VAE as LightningModules.

They learn representations without labels; :meth:`AutoEncoder.encode` is what the label-free
explanation methods explain, and :meth:`AutoEncoder.per_sample_loss` is the unsupervised loss that
label-free TracIn differentiates.
"""

from __future__ import annotations

from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch import nn

from lightning_xai.modules._adapter import AdapterLike, attach_adapter, single_input
from lightning_xai.nn.autoencoders import (
    DigitsDecoder,
    DigitsEncoder,
    check_pretext_numbers,
    gaussian_kl,
    perturb,
    reconstruction_loss,
)
from lightning_xai.utilities.tensor_checks import check_unit_interval
from lightning_xai.utilities.validation import check_finite, check_positive_int

__all__ = ["AutoEncoder", "VariationalAutoEncoder"]

_LOSSES = ("mse", "bce")
_PRETEXTS = (None, "denoise", "mask")


class AutoEncoder(pl.LightningModule):
    """An autoencoder trained on reconstruction, optionally with a pretext task.

    ``forward(x)`` is the reconstruction (``sigmoid`` of the decoder output by default);
    :meth:`encode` is the representation. Batches are read by ``adapter``: ``x``, ``(x, y, ...)``
    or a dict (``{"x": ...}``, ``{"pixel_values": ...}``, ...); labels are never used for
    training. Logs ``{train,val,test}/loss`` (mean per-example loss, summed over
    features). Training feeds the perturbed input of the pretext task and reconstructs the clean
    one; validation and test report the loss on clean inputs. Every batch is checked first: an
    empty batch, NaN or inf inputs, and (for ``loss="bce"``) inputs outside [0, 1] raise a
    ``ValueError`` naming the row.

    Args:
        encoder: maps inputs to ``latent_dim`` numbers; defaults to
            :class:`~lightning_xai.nn.DigitsEncoder` for ``(1, 8, 8)`` digits.
        decoder: maps the representation back to raw outputs (logits when ``sigmoid``);
            defaults to :class:`~lightning_xai.nn.DigitsDecoder`.
        latent_dim: size of the representation.
        loss: ``"mse"`` or ``"bce"`` reconstruction loss.
        pretext: ``None`` (reconstruction), ``"denoise"`` (Gaussian noise on the input) or
            ``"mask"`` (random zeroed features, inpainting).
        noise_level: noise standard deviation for ``pretext="denoise"``.
        mask_proportion: share of masked features for ``pretext="mask"``.
        sigmoid: apply a sigmoid to the decoder output (data in [0, 1]); set ``False`` for
            unbounded data.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        adapter: how to read batches: a :class:`~lightning_xai.utilities.BatchAdapter`, a
            mapping of its arguments (e.g. ``{"inputs": "image"}`` from YAML), or ``None`` to
            infer it. Saved with the hyperparameters as that mapping.

    Example:
        >>> ae = AutoEncoder(latent_dim=8)
        >>> x = torch.rand(5, 1, 8, 8)
        >>> ae.encode(x).shape, ae(x).shape, ae.per_sample_loss(x).shape
        (torch.Size([5, 8]), torch.Size([5, 1, 8, 8]), torch.Size([5]))
    """

    def __init__(
        self,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        latent_dim: int = 16,
        loss: Literal["mse", "bce"] = "mse",
        pretext: Literal["denoise", "mask"] | None = None,
        noise_level: float = 0.3,
        mask_proportion: float = 0.2,
        sigmoid: bool = True,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        adapter: AdapterLike = None,
    ) -> None:
        super().__init__()
        check_positive_int("latent_dim", latent_dim)
        if loss not in _LOSSES:
            raise ValueError(f"`loss` must be one of {_LOSSES}, got {loss!r}.")
        if loss == "bce" and not sigmoid:
            raise ValueError(
                "`loss='bce'` needs `sigmoid=True` (it reads the decoder output as logits); "
                "use `loss='mse'` for unbounded data."
            )
        if pretext not in _PRETEXTS:
            raise ValueError(f"`pretext` must be one of {_PRETEXTS}, got {pretext!r}.")
        if not isinstance(sigmoid, bool):
            raise TypeError(f"`sigmoid` must be True or False, got {sigmoid!r}.")
        check_pretext_numbers(noise_level, mask_proportion)
        check_finite("lr", lr, minimum=0.0, exclusive=True)
        check_finite("weight_decay", weight_decay, minimum=0.0)
        self.save_hyperparameters(ignore=["encoder", "decoder", "adapter"])
        self.adapter = attach_adapter(self, adapter)
        self.encoder = encoder if encoder is not None else DigitsEncoder(self._encoder_width())
        self.decoder = decoder if decoder is not None else DigitsDecoder(latent_dim)

    def _encoder_width(self) -> int:
        return self.hparams.latent_dim

    def _inputs(self, batch: Any) -> torch.Tensor:
        """The input of a batch, read by the adapter; labels are ignored. Empty batches and
        NaN or inf inputs raise; so do inputs outside [0, 1] for ``loss="bce"``."""
        x = single_input(self.adapter, batch, type(self).__name__)
        if self.hparams.loss == "bce" and isinstance(x, torch.Tensor):
            try:
                check_unit_interval("batch", x.detach(), "inputs")
            except ValueError as err:
                raise ValueError(
                    f"{type(self).__name__} with `loss='bce'` reconstructs inputs in [0, 1]: "
                    f"{err} Or use `loss='mse'` (with `sigmoid=False` for unbounded data)."
                ) from None
        return x

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The representation of ``x``: shape ``(batch, latent_dim)``."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The reconstruction decoded from the representation ``z``."""
        out = self.decoder(z)
        return torch.sigmoid(out) if self.hparams.sigmoid else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def _recon_loss(self, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        hp = self.hparams
        return reconstruction_loss(self.decoder(z), target, hp.loss, hp.sigmoid)

    def per_sample_loss(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """The deterministic unsupervised loss of each example: shape ``(batch,)``.

        No pretext perturbation or sampling, so it is a function of the weights alone, which is
        what label-free TracIn and influence functions differentiate. ``target`` defaults to
        ``x``.
        """
        return self._recon_loss(self.encode(x), x if target is None else target)

    def _train_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        hp = self.hparams
        x_in = perturb(x, hp.pretext, hp.noise_level, hp.mask_proportion)
        return {"loss": self._recon_loss(self.encode(x_in), x).mean()}

    def _log(self, losses: dict[str, torch.Tensor], stage: str) -> None:
        sync = stage != "train"
        for key, value in losses.items():
            self.log(
                f"{stage}/{key}",
                value,
                prog_bar=key == "loss",
                on_step=False,
                on_epoch=True,
                sync_dist=sync,
            )

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        losses = self._train_loss(self._inputs(batch))
        self._log(losses, "train")
        return losses["loss"]

    def _eval_step(self, batch: Any, stage: str) -> torch.Tensor:
        loss = self.per_sample_loss(self._inputs(batch)).mean()
        self._log({"loss": loss}, stage)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self.encode(self._inputs(batch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.Adam(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)


class VariationalAutoEncoder(AutoEncoder):
    r"""A :math:`\beta`-VAE: Gaussian encoder, reconstruction plus :math:`\beta` times the KL term.

    The encoder returns ``2 * latent_dim`` numbers, read as the mean and the log-variance of
    :math:`q(z \mid x)`. Training samples :math:`z = \mu + \sigma \epsilon`; :meth:`encode`,
    ``forward`` and :meth:`per_sample_loss` use the mean, so they are deterministic. Logs
    ``{stage}/loss``, ``{stage}/recon`` and ``{stage}/kl``.

    .. math:: \mathcal L(x) = \ell_{\text{rec}}(x, g(z)) +
        \beta\,\mathrm{KL}\big(q(z \mid x) \,\|\, \mathcal N(0, I)\big)

    Args:
        encoder: maps inputs to ``2 * latent_dim`` numbers; defaults to
            :class:`~lightning_xai.nn.DigitsEncoder`.
        decoder: as in :class:`AutoEncoder`.
        latent_dim: size of the representation.
        beta: weight of the KL term (``1`` is the plain VAE).
        loss: ``"mse"`` or ``"bce"`` reconstruction loss.
        pretext: as in :class:`AutoEncoder`.
        noise_level: as in :class:`AutoEncoder`.
        mask_proportion: as in :class:`AutoEncoder`.
        sigmoid: as in :class:`AutoEncoder`.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        adapter: as in :class:`AutoEncoder`.

    Example:
        >>> vae = VariationalAutoEncoder(latent_dim=4, beta=4.0)
        >>> x = torch.rand(3, 1, 8, 8)
        >>> vae.encode(x).shape, bool((vae.per_sample_loss(x) > 0).all())
        (torch.Size([3, 4]), True)
    """

    def __init__(
        self,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        latent_dim: int = 16,
        beta: float = 1.0,
        loss: Literal["mse", "bce"] = "bce",
        pretext: Literal["denoise", "mask"] | None = None,
        noise_level: float = 0.3,
        mask_proportion: float = 0.2,
        sigmoid: bool = True,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        adapter: AdapterLike = None,
    ) -> None:
        check_finite("beta", beta, minimum=0.0)
        super().__init__(
            encoder=encoder,
            decoder=decoder,
            latent_dim=latent_dim,
            loss=loss,
            pretext=pretext,
            noise_level=noise_level,
            mask_proportion=mask_proportion,
            sigmoid=sigmoid,
            lr=lr,
            weight_decay=weight_decay,
            adapter=adapter,
        )

    def _encoder_width(self) -> int:
        return 2 * self.hparams.latent_dim

    def encode_distribution(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of :math:`q(z \\mid x)`, each ``(batch, latent_dim)``."""
        out = self.encoder(x)
        d = self.hparams.latent_dim
        if out.ndim != 2 or out.shape[1] != 2 * d:
            raise ValueError(
                f"The encoder of a VariationalAutoEncoder must return (batch, 2 * latent_dim) = "
                f"(batch, {2 * d}) numbers (means, then log-variances), got {tuple(out.shape)}."
            )
        return out[:, :d], out[:, d:]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of :math:`q(z \\mid x)`: shape ``(batch, latent_dim)``."""
        return self.encode_distribution(x)[0]

    def _vae_losses(
        self, x_in: torch.Tensor, target: torch.Tensor, sample: bool
    ) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode_distribution(x_in)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        recon = self._recon_loss(z, target)
        kl = gaussian_kl(mu, logvar)
        return {"loss": recon + self.hparams.beta * kl, "recon": recon, "kl": kl}

    def per_sample_loss(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruction from the mean plus :math:`\\beta` KL per example: shape ``(batch,)``."""
        return self._vae_losses(x, x if target is None else target, sample=False)["loss"]

    def _train_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        hp = self.hparams
        x_in = perturb(x, hp.pretext, hp.noise_level, hp.mask_proportion)
        return {k: v.mean() for k, v in self._vae_losses(x_in, x, sample=True).items()}

    def _eval_step(self, batch: Any, stage: str) -> torch.Tensor:
        x = self._inputs(batch)
        losses = {k: v.mean() for k, v in self._vae_losses(x, x, sample=False).items()}
        self._log(losses, stage)
        return losses["loss"]
