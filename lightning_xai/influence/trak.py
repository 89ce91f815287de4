r"""A TRAK-style estimator: projected per-sample gradients with a damped inverse kernel.

At each checkpoint :math:`c`, with the projected training gradients :math:`\Phi_c` (``N x k``)
and the projected gradient :math:`\phi_c(z)` of a test example,

.. math::

    \tau(z, z_j) = \frac{1}{C} \sum_c \phi_c(z) \, (\Phi_c^\top \Phi_c + \lambda_c I)^{-1}
    \, g_c(z_j)^\top

where :math:`g_c(z_j)` is the projected loss gradient of training example :math:`j` (so that,
like TracIn, a positive score marks a proponent). The damping :math:`\lambda_c` is chosen per
checkpoint from the training features alone, as their mean squared norm
:math:`\mathrm{tr}(\Phi_c^\top \Phi_c)/N`, unless given (a number, or ``"gcv"``:
generalized cross-validation, :func:`gcv_damping`).

By default (``projection_dim="auto"``) a small problem keeps the exact gradients
(:math:`k = P`) and is solved on the ``N x N`` side,
:math:`\Phi^\top(\Phi\Phi^\top + \lambda I)^{-1}` (the Woodbury identity), from Gram matrices of
the per-sample gradients that stay factored for ``Linear`` layers: on the 1,000-digit LDS
setup of issue 15 this scores 0.626 (projected to 2048: 0.602, to 512: 0.556; TracIn 0.294).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn

from lightning_xai.influence.checkpoints import CheckpointStore
from lightning_xai.influence.errors import NonFiniteError
from lightning_xai.influence.per_sample_grads import (
    LossFn,
    ParameterSpec,
    Targets,
    _prepare,
    _split,
    _values,
)
from lightning_xai.influence.projection import GradientFeatures, GradientSketch
from lightning_xai.influence.tracin import (
    Checkpoints,
    Data,
    InfluenceResult,
    SelfInfluenceResult,
    TracIn,
    _cat_blocks,
    _check_data,
    _chunks,
    _fingerprint,
    _num_examples,
    _to,
)
from lightning_xai.utilities.batches import BatchAdapter
from lightning_xai.utilities.gradients import grad_enabled
from lightning_xai.utilities.modes import eval_mode

__all__ = ["TRAK", "gcv_damping"]

Output = Literal["margin", "loss"]

#: ``projection_dim="auto"`` keeps the exact (unprojected) gradients while there are at most
#: ``AUTO_EXACT_N`` training examples and their gradients at all checkpoints fit in
#: ``AUTO_EXACT_BYTES`` (float32), else projects to ``AUTO_DIM``.
AUTO_EXACT_N = 4096
AUTO_EXACT_BYTES = 256 * 2**20
AUTO_DIM = 2048
_SINGLE_PRECISION_CONDITION = 1e4


def gcv_damping(features: Tensor, target: Tensor, grid: int = 41) -> float:
    r"""The ridge damping :math:`\lambda` that minimises generalized cross-validation.

    GCV scores a ridge regression of ``target`` on ``features``,
    :math:`\mathrm{GCV}(\lambda) = N \lVert (I - H_\lambda) y \rVert^2 / \mathrm{tr}(I - H_\lambda)^2`
    with :math:`H_\lambda = \Phi (\Phi^\top \Phi + \lambda I)^{-1} \Phi^\top`, an estimate of the
    leave-one-out error that needs one eigendecomposition of the ``k x k`` kernel. The grid
    spans ``1e-6`` to ``1e2`` times the mean eigenvalue (log-spaced); an undamped fit of more
    features than examples has ``tr(I - H) = 0`` and is never chosen.

    Args:
        features: ``(N, k)`` training features.
        target: ``(N,)`` values to regress (e.g. each example's margin at the checkpoint).
        grid: number of candidate values.

    Returns:
        The chosen :math:`\lambda` (a float > 0).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> phi = torch.randn(200, 20, generator=g)
        >>> y = phi @ torch.randn(20, generator=g) + 3 * torch.randn(200, generator=g)
        >>> lam = gcv_damping(phi, y)
        >>> 1.0 < lam < 500.0
        True
    """
    phi = features.double()
    y = target.double().reshape(-1)
    n = phi.shape[0]
    gram = n < phi.shape[1]  # fewer examples than features: the N x N side is smaller
    evals, evecs = torch.linalg.eigh(phi @ phi.T if gram else phi.T @ phi)
    evals = evals.clamp_min(0.0)
    mean = float(evals.sum()) / phi.shape[1]
    if not math.isfinite(mean) or mean <= 0.0:
        return 1.0
    keep = evals > evals.max() * 1e-12
    s2, v = evals[keep], evecs[:, keep]
    # U^T y with U the left singular vectors of Phi
    uty = v.T @ y if gram else (v.T @ (phi.T @ y)) / s2.sqrt()
    outside = float(y @ y) - float(uty @ uty)  # the part of y outside the span of Phi
    best, best_value = mean, math.inf
    for lam in mean * torch.logspace(-6, 2, grid, dtype=torch.float64):
        shrink = lam / (s2 + lam)
        residual = max(outside, 0.0) + float(((shrink * uty) ** 2).sum())
        dof = n - float((s2 / (s2 + lam)).sum())
        if dof <= 1e-9:
            continue
        value = n * residual / dof**2
        if value < best_value:
            best, best_value = float(lam), value
    return best


def _gcv_from_gram(gram: Tensor, target: Tensor, num_features: int, grid: int = 41) -> float:
    """:func:`gcv_damping` from the ``N x N`` Gram matrix ``Phi Phi^T`` (kernel form)."""
    y = target.double().reshape(-1)
    n = gram.shape[0]
    evals, evecs = torch.linalg.eigh(gram.double())
    evals = evals.clamp_min(0.0)
    mean = float(evals.sum()) / max(num_features, 1)
    if not math.isfinite(mean) or mean <= 0.0:
        return 1.0
    keep = evals > evals.max() * 1e-12
    s2, uty = evals[keep], evecs[:, keep].T @ y
    outside = float(y @ y) - float(uty @ uty)
    best, best_value = mean, math.inf
    for lam in mean * torch.logspace(-6, 2, grid, dtype=torch.float64):
        residual = max(outside, 0.0) + float(((lam / (s2 + lam) * uty) ** 2).sum())
        dof = n - float((s2 / (s2 + lam)).sum())
        if dof > 1e-9 and n * residual / dof**2 < best_value:
            best, best_value = float(lam), n * residual / dof**2
    return best


def _margin_from_loss(loss: Tensor) -> Tensor:
    """``log(p / (1 - p))`` for ``p = exp(-loss)`` (the correct-class margin under cross-entropy)."""
    loss = loss.double().clamp_min(1e-12)
    return -loss - torch.log(-torch.expm1(-loss))


class TRAK(TracIn):
    r"""Training-data attribution with a TRAK-style estimator over saved checkpoints.

    Reuses TracIn's per-sample gradients (any model, batch layout and ``adapter``) and its
    random projection; at each checkpoint the training features are whitened by a damped
    inverse kernel :math:`(\Phi^\top \Phi + \lambda I)^{-1}` and the checkpoints averaged (an
    ensemble; pass the checkpoints of several independent runs to ensemble over runs too).
    Learning rates do not weigh checkpoints.

    Args:
        model: the network, called as ``adapter`` says.
        checkpoints: as for :class:`~lightning_xai.influence.TracIn`, or a list of
            :class:`~lightning_xai.influence.CheckpointStore` objects (directories), one per
            independent training run, whose checkpoints are all used.
        loss_fn: per-sample loss ``loss_fn(scores, target) -> (B,)``.
        parameters: the parameters whose gradients count (see ``TracIn``).
        projection_dim: the number of projected features ``k``; ``None``: the exact gradients
            (``k = P``); ``"auto"`` (default): exact while the training features of all
            checkpoints fit in 256 MiB (``N * P * C * 4`` bytes) and ``N <= 4096`` (decided on
            the first training set seen), else ``2048``. Exact scores of training *data* are
            computed in kernel form (the ``N x N`` Gram matrices of the per-sample gradients,
            kept factored for ``Linear`` layers as TracIn does; no ``P``-sized feature matrix). Projection costs quality (on the digits LDS setup:
            exact 0.63, 2048 0.60, 512 0.56); when ``k > N`` the kernel is inverted on its
            ``N x N`` side (the Woodbury identity), so exact gradients of a wide model cost an
            ``N x N`` solve, not ``P x P``.
        damping: :math:`\lambda`; ``None`` (default) chooses it per checkpoint from the
            training features alone as their mean squared norm
            :math:`\mathrm{tr}(\Phi^\top\Phi)/N` (the mean eigenvalue of the ``N x N`` Gram
            matrix: directions weaker than an average example are shrunk, stronger ones
            whitened; scale-free, the same whatever ``k``, never singular); ``"gcv"``: generalized
            cross-validation of the training examples' margins (or losses) on their features
            (:func:`gcv_damping`; damps less). A float sets it by hand (``0.0``: undamped,
            singular when ``k`` exceeds the number of training examples). No evaluation data
            is ever used.
        output: ``"margin"`` (default): the kernel uses gradients of the correct-class margin
            :math:`\log(p/(1-p))` with :math:`p = e^{-\ell}`, derived from the loss gradients
            (exact for cross-entropy losses, as in TRAK); ``"loss"``: the loss gradients
            themselves (any loss, e.g. regression).
        batch_size, targets, seed, show_progress, device, method, adapter, projection: as for
            :class:`~lightning_xai.influence.TracIn`.

    The training side is computed once per training set and kept (:meth:`fit`), so further
    queries cost their own gradients and one matrix product per checkpoint; ``train_data``
    may also be :class:`~lightning_xai.influence.GradientFeatures` from :meth:`features`.

    Example:
        >>> import torch, torch.nn.functional as F
        >>> from torch import nn
        >>> from lightning_xai.influence import Checkpoint
        >>> net = nn.Linear(4, 3)
        >>> loss = lambda out, y: F.cross_entropy(out, y, reduction="none")
        >>> trak = TRAK(net, [Checkpoint.from_module(net, lr=0.1)], loss, projection_dim=8,
        ...             show_progress=False)
        >>> x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
        >>> trak.influence((x[:2], y[:2]), (x, y)).scores.shape
        torch.Size([2, 20])
        >>> trak.damping_[0] > 0
        True
    """

    def __init__(
        self,
        model: nn.Module,
        checkpoints: Checkpoints | Sequence[CheckpointStore],
        loss_fn: LossFn,
        parameters: ParameterSpec = None,
        projection_dim: int | None | Literal["auto"] = "auto",
        damping: float | Literal["gcv"] | None = None,
        output: Output = "margin",
        batch_size: int = 256,
        targets: Targets = "labels",
        seed: int = 0,
        show_progress: bool = True,
        device: torch.device | str | None = None,
        method: Literal["auto", "vmap"] = "auto",
        adapter: BatchAdapter | None = None,
        projection: Literal["sketch", "gaussian"] = "sketch",
    ) -> None:
        if damping is not None and damping != "gcv":
            if isinstance(damping, bool) or not isinstance(damping, (int, float)):
                raise TypeError(f"`damping` must be None, 'gcv' or a number >= 0, got {damping!r}.")
            if not math.isfinite(damping) or damping < 0:
                raise ValueError(
                    f"`damping` must be None (chosen automatically) or a finite number >= 0, "
                    f"got {damping!r}."
                )
        if output not in ("margin", "loss"):
            raise ValueError(f"`output` must be 'margin' or 'loss', got {output!r}.")
        if output == "margin" and targets != "labels":
            raise ValueError(
                "`output='margin'` needs a classification loss on labels; with "
                f"targets={targets!r} pass output='loss'."
            )
        auto = isinstance(projection_dim, str) and projection_dim == "auto"
        if isinstance(projection_dim, str) and not auto:
            raise ValueError(
                f"`projection_dim` must be 'auto', None or a positive int, got {projection_dim!r}."
            )
        super().__init__(
            model,
            _flatten_runs(checkpoints),
            loss_fn,
            parameters=parameters,
            projection_dim=None if auto else cast("int | None", projection_dim),
            batch_size=batch_size,
            targets=targets,
            seed=seed,
            show_progress=show_progress,
            device=device,
            method=method,
            adapter=adapter,
            projection=projection,
        )
        self._auto_projection = auto
        self.damping = damping if damping in (None, "gcv") else float(damping)  # type: ignore[arg-type]
        self.output = output
        self.damping_: list[float] = []
        self._fit_key: Any = None
        self._fit_state: list[tuple[Tensor, Tensor]] = []  # per checkpoint (X_c, Phi_c)
        # kernel form (exact gradients of training data), per checkpoint:
        self._kernel_state: list[_KernelState] = []

    # ------------------------------------------------------------------ features
    def _resolve_projection(self, n: int) -> None:
        """``projection_dim="auto"``: exact gradients if ``n`` examples' features fit, else 2048."""
        if not self._auto_projection:
            return
        self._auto_projection = False
        size = n * sum(self._sizes) * len(self._sources) * 4
        if n > AUTO_EXACT_N or size > AUTO_EXACT_BYTES:
            self.projection_dim = AUTO_DIM
            if self.projection == "sketch":
                self._sketch = GradientSketch(AUTO_DIM, self.seed, self.device)

    def features(self, data: Data, store: str | os.PathLike | None = None) -> GradientFeatures:
        """As :meth:`TracIn.features`, with the per-sample losses TRAK needs.

        With ``projection_dim="auto"`` the first call fixes the projection from ``len(data)``.

        Args:
            data: the examples (usually the training set).
            store: a directory to read the features from or write them to.

        Returns:
            :class:`~lightning_xai.influence.GradientFeatures` (``extras["loss"]`` holds the
            per-sample losses at each checkpoint).

        Example:
            >>> import torch, torch.nn.functional as F
            >>> from torch import nn
            >>> from lightning_xai.influence import Checkpoint
            >>> net = nn.Linear(4, 3)
            >>> loss = lambda out, y: F.cross_entropy(out, y, reduction="none")
            >>> trak = TRAK(net, [Checkpoint.from_module(net, lr=0.1)], loss, show_progress=False)
            >>> feats = trak.features((torch.randn(10, 4), torch.randint(0, 3, (10,))))
            >>> (len(feats), feats.dim, trak.projection_dim)  # small: exact gradients
            (10, 15, None)
        """
        _check_data(data, "data")
        self._resolve_projection(_num_examples(data))
        return super().features(data, store)

    def _prepare(self, source: Any) -> tuple[dict[str, Tensor], float, dict[str, float] | None]:
        values, _, _ = super()._prepare(source)
        return values, 1.0 / len(self._sources), None

    def _feature_config(self) -> dict[str, Any]:
        return {**super()._feature_config(), "output": self.output}

    def _losses(self, batch: Any, values: dict[str, Tensor]) -> Tensor:
        batch = _to(batch, self.device)
        adapted = _split(self.model, batch, self.adapter, self.targets)
        with eval_mode(self.model), grad_enabled(), torch.no_grad():
            state = _values(self.model, values)
            prepared = _prepare(self.model, adapted, self.targets, state)
            scores = prepared.scores(self.model, state, prepared.inputs, prepared.extras)
            return self.loss_fn(scores, prepared.target).detach().reshape(-1)

    def _chunk_features(
        self,
        batch: Any,
        values: dict[str, Tensor],
        scale: dict[str, float] | None,
        name: str,
        offset: int,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        feats, _ = super()._chunk_features(batch, values, scale, name, offset)
        return feats, {"loss": self._losses(batch, values).float().cpu()}

    # ------------------------------------------------------------------ the kernel
    def _row_scale(self, loss: Tensor) -> Tensor:
        """``q`` with loss gradient = ``q`` x kernel-side gradient (``1 - p`` for margins)."""
        if self.output == "loss":
            return torch.ones_like(loss, dtype=torch.float64)
        return (-torch.expm1(-loss.double().clamp_min(0.0))).clamp_min(1e-12)

    def _kernel_side(self, feats: Tensor, loss: Tensor) -> tuple[Tensor, Tensor]:
        """(features whose kernel is inverted, regression target for the damping)."""
        feats = feats.double()
        if self.output == "loss":
            return feats, loss.double()
        return feats / self._row_scale(loss)[:, None], _margin_from_loss(loss)

    def fit(self, train_data: Data) -> TRAK:
        """Compute (or reuse) the training side: features and damped inverse kernels.

        Args:
            train_data: the ``N`` training examples or their
                :class:`~lightning_xai.influence.GradientFeatures`.

        Returns:
            ``self``; ``damping_`` holds the damping used at each checkpoint.
        """
        if isinstance(train_data, GradientFeatures):
            self._resolve_projection(len(train_data))
            key: Any = ("features", id(train_data), train_data.key())
        else:
            _check_data(train_data, "train_data")
            key = ("data", _fingerprint(train_data, self.batch_size))
        if key == self._fit_key:
            return self
        if not isinstance(train_data, GradientFeatures):
            self._resolve_projection(_num_examples(train_data))
            if self.projection_dim is None:
                return self._fit_kernel(train_data, key)
        self._kernel_state = []
        feats = (
            train_data if isinstance(train_data, GradientFeatures) else self.features(train_data)
        )
        self._check_features(feats, "train_data")
        if "loss" not in feats.extras:
            raise ValueError(
                "`train_data` features lack the per-sample losses TRAK needs; compute them "
                "with TRAK.features(), not TracIn.features()."
            )
        state, damping = [], []
        for c, stored in enumerate(feats.features):
            train = stored.to(self.device).double()
            loss = feats.extras["loss"][c].to(self.device)
            phi, target = self._kernel_side(train, loss)
            n, k = phi.shape
            if self.damping is None:
                lam = float(phi.square().sum()) / max(n, 1)
                lam = lam if math.isfinite(lam) and lam > 0 else 1.0
            elif self.damping == "gcv":
                lam = gcv_damping(phi, target)
            else:
                lam = float(self.damping)
            # train = D phi (D = diag(q), q = 1 - p for margins); x = train (phi^T phi + l)^-1, or on the
            # N x N side when k > N: x = D (phi phi^T + l)^-1 phi (the Woodbury identity)
            gram = k > n
            kernel = phi @ phi.T if gram else phi.T @ phi
            kernel.diagonal().add_(lam)
            rhs = phi if gram else train.T
            try:
                x = torch.cholesky_solve(rhs, torch.linalg.cholesky(kernel))
            except RuntimeError:  # singular (undamped): least squares
                x = torch.linalg.lstsq(kernel, rhs).solution
            if gram:
                x = x * self._row_scale(loss)[:, None]
            else:
                x = x.T
            if not bool(torch.isfinite(x).all()):
                raise NonFiniteError(
                    f"TRAK: the kernel at checkpoint {c} could not be inverted with damping "
                    f"{lam:g} (singular); leave damping=None to choose it automatically."
                )
            state.append((x.float(), phi.float()))
            damping.append(float(lam))
        self._fit_state, self.damping_, self._fit_key = state, damping, key
        return self

    def _blocks_and_losses(
        self, data: Data, values: dict[str, Tensor], name: str, check: bool
    ) -> tuple[Any, Tensor]:
        """Per-sample gradient blocks (factored where possible) and losses of ``data``."""
        blocks, losses, offset = [], [], 0
        for batch in _chunks(data, self.batch_size):
            if check:
                self._check_rows(batch, name, offset)
            blocks.append(self._grads(batch, values, None, name, offset))
            losses.append(self._losses(batch, values))
            offset += len(blocks[-1])
        return _cat_blocks(blocks), torch.cat(losses).to(self.device)

    def _fit_kernel(self, train_data: Data, key: Any) -> TRAK:
        r"""Exact gradients in kernel form: with ``K`` the ``N x N`` Gram matrix of the training
        kernel-side gradients, the score is ``k(z) (K + l I)^{-1} diag(q)`` where ``k(z)`` holds the
        test gradient's dot products with them (the Woodbury identity)."""
        state, damping = [], []
        for c, source in enumerate(self._sources):
            values, _, _ = self._prepare(source)
            blocks, loss = self._blocks_and_losses(train_data, values, "train_data", c == 0)
            q = self._row_scale(loss)
            gram = blocks.dot(blocks).double() / (q[:, None] * q[None, :])
            n = len(gram)
            if self.damping is None:
                lam = float(gram.diagonal().sum()) / max(n, 1)
                lam = lam if math.isfinite(lam) and lam > 0 else 1.0
            elif self.damping == "gcv":
                target = loss.double() if self.output == "loss" else _margin_from_loss(loss)
                lam = _gcv_from_gram(gram, target, sum(self._sizes))
            else:
                lam = float(self.damping)
            kernel = gram
            kernel.diagonal().add_(lam)
            # the condition number is at most 1 + tr(K) / l (= 1 + N at the default damping):
            # single precision halves the N^3 work where that bound keeps it accurate
            bound = 1.0 + float(gram.diagonal().sum() - n * lam) / lam if lam > 0 else math.inf
            if bound <= _SINGLE_PRECISION_CONDITION:
                kernel = kernel.float()
            factor, chol = torch.linalg.cholesky_ex(kernel)
            if int(chol) != 0:  # singular (undamped): the pseudo-inverse
                factor = torch.linalg.pinv(kernel, hermitian=True)
            if not bool(torch.isfinite(factor).all()):
                raise NonFiniteError(
                    f"TRAK: the kernel at checkpoint {c} could not be inverted with damping "
                    f"{lam:g} (singular); leave damping=None to choose it automatically."
                )
            kernel_state = _KernelState(blocks, q, factor, int(chol) == 0, lam)
            if int(chol) != 0:  # diag((K + l I - l I) (K + l I)^+) q, while K is at hand
                kernel_state.fixed = (
                    torch.linalg.vecdot(kernel, factor) - lam * factor.diagonal()
                ) * q
            state.append(kernel_state)
            damping.append(float(lam))
        self._kernel_state, self._fit_state = state, []
        self.damping_, self._fit_key = damping, key
        return self

    # ------------------------------------------------------------------ public API
    def _test_side(self, feats: Tensor, loss: Tensor) -> Tensor:
        if self.output == "loss":
            return feats
        q = (-torch.expm1(-loss.double().clamp_min(0.0))).clamp_min(1e-12)
        return (feats.double() / q[:, None].to(feats.device)).float()

    def influence(self, test_data: Data, train_data: Data) -> InfluenceResult:
        r"""TRAK scores of every training example for every test example.

        Args:
            test_data: the ``M`` examples to explain.
            train_data: the ``N`` training examples (the training side is computed once and
                kept for further calls with the same data) or their
                :class:`~lightning_xai.influence.GradientFeatures`.

        Returns:
            :class:`~lightning_xai.influence.InfluenceResult` with ``(M, N)`` scores (positive:
            a proponent).
        """
        _check_data(test_data, "test_data")
        self.fit(train_data)
        total: Tensor | None = None
        for c, source in enumerate(self._sources):
            values, weight, scale = self._prepare(source)
            if self._kernel_state:
                kernel = self._kernel_state[c]
                test_blocks, test_loss = self._blocks_and_losses(
                    test_data, values, "test_data", c == 0
                )
                qt = self._row_scale(test_loss)
                cross = test_blocks.dot(kernel.blocks).double() / (qt[:, None] * kernel.q[None, :])
                part = kernel.solve(cross) * weight
                total = part if total is None else total + part
                continue
            test, extras = self._features_at(test_data, values, scale, "test_data", c == 0)
            test = self._test_side(test, extras["loss"])
            x = self._fit_state[c][0]
            part = (test.to(x.device) @ x.T).double() * weight
            total = part if total is None else total + part
        return InfluenceResult(scores=self._finite(cast(Tensor, total), "influence"))

    def self_influence(self, data: Data) -> SelfInfluenceResult:
        r"""Each training example's score for itself, :math:`\tau(z_j, z_j)` (a leverage).

        Args:
            data: the training examples or their features; the training side is fitted on them.

        Returns:
            :class:`~lightning_xai.influence.SelfInfluenceResult` with ``(N,)`` scores.
        """
        self.fit(data)
        total: Tensor | None = None
        for kernel in self._kernel_state:
            part = kernel.leverage() / len(self._kernel_state)
            total = part if total is None else total + part
        for x, phi in self._fit_state:
            part = torch.linalg.vecdot(x, phi).double() / len(self._fit_state)
            total = part if total is None else total + part
        return SelfInfluenceResult(self._finite(cast(Tensor, total), "self-influence"))


@dataclass
class _KernelState:
    """One checkpoint's training side in kernel form: ``factor`` is the Cholesky factor of
    ``K + l I`` (``chol``) or its pseudo-inverse (singular, undamped)."""

    blocks: Any
    q: Tensor
    factor: Tensor
    chol: bool
    damping: float
    fixed: Tensor | None = None

    def solve(self, cross: Tensor) -> Tensor:
        """``cross (K + l I)^{-1} diag(q)`` for ``(M, N)`` test-train kernel rows ``cross``."""
        cross = cross.to(self.factor.dtype)
        if self.chol:
            out = torch.cholesky_solve(cross.T.contiguous(), self.factor).T
        else:
            out = cross @ self.factor
        return out.double() * self.q[None, :]

    def leverage(self) -> Tensor:
        """``diag(K (K + l I)^{-1}) q = (1 - l diag((K + l I)^{-1})) q``."""
        if self.fixed is not None:
            return self.fixed
        inverse = torch.cholesky_inverse(self.factor) if self.chol else self.factor
        return (1.0 - self.damping * inverse.diagonal().double()) * self.q


def _flatten_runs(checkpoints: Any) -> Any:
    """A list of stores (one per run) becomes the list of all their checkpoints."""
    if isinstance(checkpoints, (str, os.PathLike, CheckpointStore)) or not isinstance(
        checkpoints, Sequence
    ):
        return checkpoints
    items = list(checkpoints)
    if not any(
        isinstance(c, CheckpointStore) or (isinstance(c, (str, os.PathLike)) and Path(c).is_dir())
        for c in items
    ):
        return checkpoints
    flat: list[Any] = []
    for item in items:
        store = item if isinstance(item, CheckpointStore) else None
        if store is None and isinstance(item, (str, os.PathLike)) and Path(item).is_dir():
            store = CheckpointStore(item)
        if store is None:
            flat.append(item)
        else:
            flat.extend(store[i] for i in range(len(store)))
    return flat
