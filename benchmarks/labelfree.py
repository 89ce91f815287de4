"""Label-free example importance: lightning-xai vs lfxai 0.1.1, same autoencoder and data, one run.

An :class:`~lightning_xai.modules.AutoEncoder` (default conv nets, 16-d latent) is trained on the
bundled digits (30 epochs, Adam; 5 checkpoints recorded by ``TracInCheckpoint``). Then, on
1000 training x 100 test digits:

1. TracIn (encoder gradients of the reconstruction loss, 5 checkpoints), SimplEx and latent
   nearest neighbours: time (best of ``--repeat``), rows filled, agreement between the tools;
2. example consistency: top-10 label agreement (labels used for evaluation only);
3. feature consistency at k = 4 of 64 pixels: latent shift when the 4 most attributed pixels
   (label-free integrated gradients) are zeroed, against 4 random pixels;
4. rows filled for 7 and 513 test examples, and lfxai's influence functions.

lfxai is called through its documented tensor API (``attribute(X_test, train_idx)``) with
``X_train`` given and its model requirements met by the same module (``model.encoder``,
``model(x)`` = reconstruction, ``model.checkpoints_files``). Its SimplEx ranks examples by its
approximate weights; ours ranks by exact weights, breaking ties among zero weights by latent
distance (``top_k``), and is also shown with a local corpus (``corpus_top_k``).

Run: ``python benchmarks/labelfree.py`` after ``make bench-deps`` (1 CPU thread; lfxai's
TracIn takes about a minute).
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from _timing import timed  # noqa: E402  (sibling module of this script)

from lightning_xai.attribution import Attributor
from lightning_xai.callbacks import TracInCheckpoint
from lightning_xai.data import DigitsDataModule
from lightning_xai.influence import (
    CheckpointStore,
    LabelFreeTracIn,
    LatentNearestNeighbours,
    SimplEx,
)
from lightning_xai.metrics.functional import example_consistency, feature_consistency
from lightning_xai.modules import AutoEncoder

warnings.filterwarnings("ignore")


def train(workdir: Path, epochs: int) -> tuple[AutoEncoder, DigitsDataModule, CheckpointStore]:
    pl.seed_everything(0, verbose=False)
    model, data = AutoEncoder(latent_dim=16), DigitsDataModule(batch_size=64)
    recorder = TracInCheckpoint(every_n_epochs=max(1, epochs // 5), dirpath=workdir / "checkpoints")
    trainer = pl.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[recorder],
    )
    trainer.fit(model, datamodule=data)
    return model.eval(), data, recorder.store


def rows_filled(scores: torch.Tensor) -> str:
    filled = int((scores.abs().sum(1) > 0).sum())
    return f"{filled}/{len(scores)}"


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def residual(weights: torch.Tensor, h_test: torch.Tensor, h_train: torch.Tensor) -> float:
    return float((weights @ h_train - h_test).norm(dim=1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)

    import lfxai.explanations.examples as ref_examples
    from lfxai.explanations.examples import InfluenceFunctions as RefInfluence
    from lfxai.explanations.examples import NearestNeighbours as RefNN
    from lfxai.explanations.examples import SimplEx as RefSimplEx
    from lfxai.explanations.examples import TracIn as RefTracIn
    from lfxai.explanations.features import attribute_auxiliary
    from lfxai.utils.feature_attribution import generate_masks
    from lfxai.utils.metrics import similarity_rates

    ref_examples.tqdm = lambda iterable=None, **_: iterable  # silence lfxai's progress bars
    ref_examples.product = lambda *iterables, **_: itertools.product(*iterables)
    workdir = Path(tempfile.mkdtemp(prefix="labelfree_bench_"))
    model, data, store = train(workdir, args.epochs)
    final = {k: v.clone() for k, v in model.state_dict().items()}
    x_train, y_train = data.train_dataset.x[:1000], data.train_dataset.y[:1000]
    x_test, y_test = data.test_dataset.x[:100], data.test_dataset.y[:100]
    train_idx = list(range(len(x_train)))
    with torch.no_grad():
        h_train, h_test = model.encode(x_train), model.encode(x_test)
    lr = float(store[0].lr)
    print(
        f"autoencoder: {args.epochs} epochs, {len(store)} checkpoints (lr {lr:g}), 1000 train x 100 test digits"
    )

    def sum_sq(x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:  # our per_sample_loss, summed
        return ((recon - x) ** 2).sum()

    rows: list[
        tuple[str, str, float, str, float, str]
    ] = []  # method, tool, time, rows, agreement, note
    x_all = torch.cat([x_test, x_train])

    def forward_backward() -> None:  # one batched pass per checkpoint: what any TracIn must pay
        for _ in range(len(store)):
            model.zero_grad()
            model.per_sample_loss(x_all).sum().backward()

    with torch.no_grad():
        _, t_encode = timed(lambda: model.encode(x_all), args.repeat)
    _, t_pass = timed(forward_backward, args.repeat)
    model.zero_grad()

    # ---------------------------------------------------------------- TracIn
    ours_tracin = LabelFreeTracIn(model, store, show_progress=False)
    tracin, t_ours = timed(lambda: ours_tracin.attribute(x_test, x_train), args.repeat)
    files = []
    for i, ckpt in enumerate(store):
        files.append(workdir / f"lfxai_ckpt{i}.pt")
        torch.save(ckpt.params, files[-1])
    model.checkpoints_files = files
    ref = RefTracIn(model, sum_sq, workdir / "lfxai_tracin", X_train=x_train)
    ref_tracin, t_ref = timed(lambda: ref.attribute(x_test, train_idx, learning_rate=lr).detach())
    model.load_state_dict(final)
    tracin_agree = example_consistency(
        ours_tracin.top_k(x_test, x_train, 10).indices, y_test, y_train, k=10
    )
    ref_agree = similarity_rates(ref_tracin, y_train, y_test, n_top_list=[10])[0][0]
    diff = rel_diff(tracin, ref_tracin)
    rows.append(
        (
            "TracIn",
            "lightning-xai",
            t_ours,
            rows_filled(tracin),
            float(tracin_agree),
            f"max rel diff vs lfxai {diff:.1e}",
        )
    )
    rows.append(("TracIn", "lfxai 0.1.1", t_ref, rows_filled(ref_tracin), ref_agree, ""))

    # ---------------------------------------------------------------- SimplEx
    ref_simplex_weights, t_ref = timed(
        lambda: RefSimplEx(model, X_train=x_train).attribute(x_test, train_idx), args.repeat
    )
    for label, kwargs in (
        ("SimplEx, whole corpus", {"corpus_top_k": None}),
        ("SimplEx, 32-NN corpus*", {}),
    ):
        explainer = SimplEx(model.encode, **kwargs)
        weights, t_ours = timed(lambda e=explainer: e.attribute(x_test, x_train), args.repeat)
        agree = example_consistency(
            explainer.top_k(x_test, x_train, 10).indices, y_test, y_train, k=10
        )
        note = f"residual {residual(weights, h_test, h_train):.2f}, {float((weights > 0).sum(1).float().mean()):.1f} non-zero"
        rows.append((label, "lightning-xai", t_ours, rows_filled(weights), float(agree), note))
    ref_agree = similarity_rates(ref_simplex_weights, y_train, y_test, n_top_list=[10])[0][0]
    note = (
        f"residual {residual(ref_simplex_weights, h_test, h_train):.2f} (1000 Adam steps per batch)"
    )
    rows.append(
        ("SimplEx", "lfxai 0.1.1", t_ref, rows_filled(ref_simplex_weights), ref_agree, note)
    )

    # ---------------------------------------------------------------- nearest neighbours
    knn = LatentNearestNeighbours(model.encode)
    knn_scores, t_ours = timed(lambda: knn.attribute(x_test, x_train), args.repeat)
    agree = example_consistency(knn.top_k(x_test, x_train, 10).indices, y_test, y_train, k=10)
    rows.append(
        ("nearest neighbours", "lightning-xai", t_ours, rows_filled(knn_scores), float(agree), "")
    )
    ref_knn, t_ref = timed(
        lambda: RefNN(model, X_train=x_train).attribute(x_test, train_idx), args.repeat
    )
    ref_agree = similarity_rates(ref_knn, y_train, y_test, n_top_list=[10])[0][0]
    rows.append(
        (
            "nearest neighbours",
            "lfxai 0.1.1",
            t_ref,
            rows_filled(ref_knn),
            ref_agree,
            "attribute(): batch_size=500 > 100 test",
        )
    )

    print(
        f"\n{'method':<26}{'tool':<15}{'time [s]':>10}{'speed-up':>10}{'rows filled':>13}{'top-10 label agreement':>24}  note"
    )
    ours_time: dict[str, float] = {}
    for method, tool, seconds, filled, agreement, note in rows:
        key = method.split(",")[0]
        if tool == "lightning-xai":
            ours_time.setdefault(key, seconds)
            speed = ""
        else:
            speed = f"{seconds / ours_time[key]:.0f}x"
        print(
            f"{method:<26}{tool:<15}{seconds:>10.3f}{speed:>10}{filled:>13}{agreement:>24.3f}  {note}"
        )
    print(
        "(speed-up: the reference's time over ours, for the first lightning-xai row of the method;"
        " * = SimplEx's default, corpus_top_k=32)"
    )
    print(
        f"floors: encoding the 1100 digits {t_encode:.3f} s (inside every SimplEx/NN time); one batched "
        f"forward+backward of the loss over them per checkpoint, {len(store)} checkpoints: {t_pass:.3f} s"
    )

    # ---------------------------------------------------------------- feature consistency
    print(
        "\nfeature consistency, label-free integrated gradients, k = 4 of 64 pixels zeroed (100 test digits):"
    )
    attributor = Attributor(
        model,
        "integrated_gradients",
        label_free=True,
        forward_fn=model.encode,
        completeness_threshold=None,
    )
    ours_attr, t_ours = timed(lambda: attributor.attribute(x_test).attributions, args.repeat)
    ours_fc = feature_consistency(model.encode, x_test, ours_attr, k=4, n_random=10)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x_test, y_test), batch_size=100
    )
    from captum.attr import IntegratedGradients

    def ref_attribution() -> torch.Tensor:
        return torch.from_numpy(
            attribute_auxiliary(
                model.encoder,
                loader,
                torch.device("cpu"),
                IntegratedGradients(model.encoder),
                torch.zeros(1, 1, 8, 8),
            )
        )

    ref_attr, t_ref = timed(ref_attribution, args.repeat)
    masks = generate_masks(ref_attr.numpy(), 4)
    with torch.no_grad():
        ref_top = (h_test - model.encode(x_test * masks)).norm(dim=1).mean()
    ref_fc = feature_consistency(model.encode, x_test, ref_attr.float(), k=4, n_random=10)
    print(
        f"  lightning-xai: {t_ours:.3f} s, top-4 shift {float(ours_fc['top_shift']):.3f}, random-4 shift "
        f"{float(ours_fc['random_shift']):.3f}, ratio {float(ours_fc['ratio']):.2f}"
    )
    print(
        f"  lfxai 0.1.1:   {t_ref:.3f} s, top-4 shift {float(ref_top):.3f} (its generate_masks), ratio "
        f"{float(ref_top / ours_fc['random_shift']):.2f} against the same random shift; "
        f"through our metric: ratio {float(ref_fc['ratio']):.2f}"
    )

    # ---------------------------------------------------------------- any number of test examples
    print("\nrows filled for other test-set sizes (test examples drawn from train+test digits):")
    pool = torch.cat([data.test_dataset.x, data.train_dataset.x[1000:], data.val_dataset.x])
    for n in (7, 513):
        x = pool[:n]
        ours = [
            rows_filled(SimplEx(model.encode, corpus_top_k=None).attribute(x, x_train)),
            rows_filled(knn.attribute(x, x_train)),
        ]
        refs = [
            rows_filled(RefSimplEx(model, X_train=x_train).attribute(x, train_idx)),
            rows_filled(RefNN(model, X_train=x_train).attribute(x, train_idx)),
        ]
        print(
            f"  n_test={n:<4} SimplEx ours {ours[0]:>8} lfxai {refs[0]:>8} | nearest neighbours ours {ours[1]:>8} lfxai {refs[1]:>8}"
        )

    try:
        RefInfluence(model, sum_sq, workdir / "lfxai_if", X_train=x_train).attribute(
            x_test[:2], train_idx[:5], recursion_depth=2
        )
        print("\nlfxai influence functions: ran")
    except Exception as err:  # noqa: BLE001 - reporting the reference's failure
        print(f"\nlfxai influence functions: {type(err).__name__}: {err}")


if __name__ == "__main__":
    main()
