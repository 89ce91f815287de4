"""Concept bottleneck / embedding models on the bundled digits, against a black box and
pytorch-concepts.

    nice .venv/bin/python benchmarks/concepts.py [--epochs 40] [--seed 0]

Measures, on the test split of :class:`~lightning_xai.data.ConceptDigitsDataModule`
(task "digit", 17 concepts: 7 shape concepts and the digit identity):

* task accuracy of the same CNN encoder trained as a black box, as a joint CBM and as a CEM,
  and their concept accuracy (mean over concepts);
* intervention curves (random and uncertainty order) and task accuracy with every concept
  corrected; whether CEM's curve lies on or above the joint CBM's at every point;
* rules read from a CBM with a logic head on the "parity", "prime" and "geq5" tasks, compared
  with the known rules (logically, and on every digit's concept vector);
* training time per epoch against pytorch-concepts 1.0.0a7 (``pip install --no-deps
  pytorch-concepts==1.0.0a7 pandas pytz``) with the same encoder, batches and optimizer.
"""

from __future__ import annotations

import argparse
import time

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from lightning_xai.concepts import intervention_curves
from lightning_xai.data import ConceptDigitsDataModule
from lightning_xai.modules import Classifier, ConceptBottleneckModel, ConceptEmbeddingModel


def encoder() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 16, 64),
        nn.ReLU(),
    )


def trainer(epochs: int, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


class _EpochTimer(pl.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.times.append(time.perf_counter() - self._t)


def fit(model: pl.LightningModule, dm: pl.LightningDataModule, epochs: int) -> float:
    timer = _EpochTimer()
    trainer(epochs, callbacks=[timer], limit_val_batches=0).fit(model, dm)
    return sorted(timer.times)[len(timer.times) // 2]


def evaluate(model, dm) -> dict[str, float]:
    x, c, y = dm.test_dataset.tensors
    model.eval()
    with torch.no_grad():
        out = model.concept_outputs(x)
    concept_acc = float(((out.concept_probs > 0.5).float() == c).float().mean(0).mean())
    curves = intervention_curves(model, x, c, y)
    return {
        "task_acc": float((out.task_logits.argmax(1) == y).float().mean()),
        "concept_acc": concept_acc,
        "curves": {cv.strategy: cv.accuracy for cv in curves},
    }


def reference_epoch_time(cls_name: str, dm, epochs: int) -> float | str:
    try:
        from torch_concepts.annotations import Annotations
        from torch_concepts.nn import ConceptBottleneckModel as TcCBM
        from torch_concepts.nn import ConceptEmbeddingModel as TcCEM
    except Exception as err:  # noqa: BLE001 - report why the reference is missing
        return f"not importable: {type(err).__name__}: {err}"
    k, n = dm.n_concepts, dm.n_classes
    ann = Annotations(
        labels=[*dm.concept_names, "task"],
        cardinalities=[1] * k + [n],
        types=["binary"] * k + ["categorical"],
    )
    cls = TcCBM if cls_name == "cbm" else TcCEM
    extra = {"embedding_size": 16} if cls_name == "cem" else {}
    model = cls(
        input_size=64, annotations=ann, task_names=["task"], backbone=encoder(), latent_size=64,
        **extra,
    )  # fmt: skip
    query = [*dm.concept_names, "task"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    model.train()
    for _ in range(epochs):
        start = time.perf_counter()
        for x, c, y in dm.train_dataloader():
            optimizer.zero_grad()
            logits = model(query=query, input=x).logits
            logits = torch.as_tensor(logits)
            loss = F.cross_entropy(logits[:, k:], y) + F.binary_cross_entropy_with_logits(
                logits[:, :k], c
            )
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timing-epochs", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dm = ConceptDigitsDataModule(task="digit", batch_size=64, seed=args.seed)
    dm.setup()
    names = dict(concept_names=dm.concept_names, class_names=dm.class_names)
    rows = {}

    pl.seed_everything(args.seed)
    box = Classifier(nn.Sequential(encoder(), nn.Linear(64, 10)), num_classes=10, lr=1e-3)
    box_time = fit(box, _Pairs(dm), args.epochs)
    x, c, y = dm.test_dataset.tensors
    with torch.no_grad():
        box_acc = float((box.eval()(x).argmax(1) == y).float().mean())
    print(f"black box: task accuracy {box_acc:.4f}  ({box_time * 1000:.0f} ms/epoch)")

    for key, make in (
        ("cbm", lambda: ConceptBottleneckModel(encoder(), dm.n_concepts, 10, **names)),
        ("cem", lambda: ConceptEmbeddingModel(encoder(), dm.n_concepts, 10, **names)),
    ):
        pl.seed_everything(args.seed)
        model = make()
        epoch_time = fit(model, dm, args.epochs)
        result = evaluate(model, dm)
        result["epoch_time"] = epoch_time
        rows[key] = result
        curve = result["curves"]
        print(
            f"{key}: task accuracy {result['task_acc']:.4f} (black box {box_acc:.4f}, "
            f"gap {100 * (box_acc - result['task_acc']):+.2f} points), concept accuracy "
            f"{result['concept_acc']:.4f}, all concepts corrected {curve['random'][-1]:.4f}"
        )
        for strategy, values in curve.items():
            print(f"  {strategy:11s} " + " ".join(f"{v:.3f}" for v in values))
    dominated = all(
        a >= b - 1e-9
        for s in ("random", "uncertainty")
        for a, b in zip(rows["cem"]["curves"][s], rows["cbm"]["curves"][s])
    )
    print(f"CEM curve on or above the joint CBM's at every point: {dominated}")

    for task in ("parity", "prime", "geq5"):
        tdm = ConceptDigitsDataModule(task=task, batch_size=64, seed=args.seed)
        tdm.setup()
        for mode in ("joint", "independent"):
            pl.seed_everything(args.seed)
            cbm = ConceptBottleneckModel(
                encoder(), tdm.n_concepts, tdm.n_classes, tdm.concept_names, tdm.class_names,
                head="logic", training_mode=mode, hidden=(8,), lr=3e-3,
            )  # fmt: skip
            fit(cbm, tdm, args.epochs)
            tx, _, ty = tdm.train_dataset.tensors
            ex, ec, ey = tdm.test_dataset.tensors
            rules = cbm.explain(tx, ty, eval_x=ex, eval_y=ey)
            for rule, truth in zip(rules, tdm.rules):
                on_digits = torch.equal(
                    rule.evaluate(tdm.class_concepts), truth.evaluate(tdm.class_concepts)
                )
                print(
                    f"{task:6s} {mode:11s} {rule.class_name:10s} {rule}  | logically equivalent "
                    f"{rule.equivalent(truth)}, equal on all 10 digits {on_digits}, accuracy "
                    f"{rule.accuracy:.3f}"
                )

    for key in ("cbm", "cem"):
        reference = reference_epoch_time(key, dm, args.timing_epochs)
        ours = rows[key]["epoch_time"]
        if isinstance(reference, str):
            print(f"{key} time per epoch: ours {ours * 1000:.0f} ms; pytorch-concepts {reference}")
        else:
            print(
                f"{key} time per epoch: ours {ours * 1000:.0f} ms (Trainer), pytorch-concepts "
                f"{reference * 1000:.0f} ms (plain loop): ratio {ours / reference:.2f}"
            )


class _Pairs(pl.LightningDataModule):
    """The digits as ``(x, y)`` for the black box."""

    def __init__(self, dm: ConceptDigitsDataModule) -> None:
        super().__init__()
        self.dm = dm

    def train_dataloader(self):
        from torch.utils.data import DataLoader, TensorDataset

        x, _, y = self.dm.train_dataset.tensors
        return DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)


if __name__ == "__main__":
    main()
