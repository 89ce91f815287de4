"""Right for the right reasons on decoy digits: accuracy, reliance on the decoy, and cost.

In one run, with an MLP backbone and several seeds, trains

* ``plain``: :class:`~lightning_xai.modules.Classifier` on decoy digits (the patch intensity
  gives the label away in training; it is random in the decoy test split),
* ``regularized``: :class:`~lightning_xai.modules.ExplanationRegularizedClassifier` on the same
  data, with the patch masks,
* ``no decoy``: ``Classifier`` on the same digits without any patch,
* ``reference loop``: the same penalty written out by hand in a plain PyTorch loop (no
  Lightning, no lightning_xai code in the loss), as a cross-check of the module,

and prints train, decoy-test and clean-test accuracy and the share of input-gradient mass on
the patch (decoy test split). Then it measures the regularized/plain cost ratios:

* step time: wall time per training step inside ``Trainer.fit`` (``on_train_batch_start`` to
  ``on_train_batch_end``: forward, backward, optimizer, logging), the two models alternating
  epoch by epoch (interleaved), medians over steps; and the same for bare steps (loss,
  backward, optimizer step, no Lightning), alternating step by step.
* peak memory (CPU, no profiler): bytes of every distinct tensor storage alive at the peak of a
  step, i.e. at the start of the backward pass: parameters, gradients, optimizer state and the
  batch, plus every tensor autograd saved for the backward pass (recorded with
  ``torch.autograd.graph.saved_tensors_hooks``, deduplicated by storage). The saved-tensor part
  (activations) is printed on its own as well.

    python benchmarks/rrr.py            # 3 seeds, about 2-4 minutes on 2 CPU cores
    python benchmarks/rrr.py --seeds 1 --epochs 10   # smoke run
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_xai.data import DecoyDigitsDataModule
from lightning_xai.metrics.functional import right_reasons_score
from lightning_xai.modules import Classifier, ExplanationRegularizedClassifier
from lightning_xai.nn import MLP
from lightning_xai.penalties import log_prob_input_gradients

HIDDEN = (64,)
BATCH = 64
LR = 1e-3


def _quiet() -> None:
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _trainer(epochs: int, callbacks: list[pl.Callback] | None = None) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=callbacks or [],
    )


def _backbone(side: int) -> nn.Module:
    return MLP(side * side, HIDDEN, 10)


def _accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(-1) == y).float().mean().item()


def _reference_loop(
    data: DecoyDigitsDataModule, weight: float, epochs: int, seed: int
) -> nn.Module:
    """The penalty written out by hand: loss = mean_n [CE_n + weight * sum_d (A g)^2]."""
    torch.manual_seed(seed)
    model = _backbone(data.image_size)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    x_all, y_all, mask_all = data.train_dataset.tensors
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x_all), generator=g).split(BATCH):
            x = x_all[idx].clone().requires_grad_(True)
            log_probs = F.log_softmax(model(x), dim=-1)
            (grad,) = torch.autograd.grad(log_probs.sum(), x, create_graph=True)
            penalty = ((mask_all[idx].float() * grad) ** 2).flatten(1).sum(1).mean()
            loss = F.nll_loss(log_probs, y_all[idx]) + weight * penalty
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def _module(name: str, side: int, weight: float) -> Classifier:
    if name == "regularized":
        return ExplanationRegularizedClassifier(_backbone(side), 10, penalty_weight=weight, lr=LR)
    return Classifier(_backbone(side), 10, lr=LR)


def run_accuracy(seeds: list[int], epochs: int, weight: float) -> dict[str, list[dict[str, float]]]:
    results: dict[str, list[dict[str, float]]] = {}
    for seed in seeds:
        decoy = DecoyDigitsDataModule(batch_size=BATCH, seed=seed)
        clean = DecoyDigitsDataModule(batch_size=BATCH, seed=seed, decoy=False)
        decoy.setup()
        clean.setup()
        test_x, test_y, test_mask = decoy.decoy_test_dataset.tensors
        clean_x, clean_y = decoy.clean_test_dataset.tensors
        for name, data in (("plain", decoy), ("regularized", decoy), ("no decoy", clean)):
            pl.seed_everything(seed, verbose=False)
            module = _module(name, data.image_size, weight)
            _trainer(epochs).fit(module, datamodule=data)
            results.setdefault(name, []).append(
                _evaluate(module.model, data, test_x, test_y, test_mask, clean_x, clean_y)
            )
        model = _reference_loop(decoy, weight, epochs, seed)
        results.setdefault("reference loop", []).append(
            _evaluate(model, decoy, test_x, test_y, test_mask, clean_x, clean_y)
        )
    return results


def _evaluate(model, data, test_x, test_y, test_mask, clean_x, clean_y) -> dict[str, float]:
    train_x, train_y = data.train_dataset.x, data.train_dataset.y
    model.eval()
    grads, _ = log_prob_input_gradients(model, test_x, create_graph=False)
    return {
        "train acc": _accuracy(model, train_x, train_y),
        "decoy-test acc": _accuracy(model, test_x, test_y),
        "clean-test acc": _accuracy(model, clean_x, clean_y),
        "patch share": right_reasons_score(grads, test_mask).item(),
    }


class _StepTimer(pl.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter() - self._start)


def run_cost(weight: float, rounds: int, bare_steps: int) -> dict[str, float]:
    data = DecoyDigitsDataModule(batch_size=BATCH, seed=0)
    data.setup()
    side = data.image_size
    torch.manual_seed(0)
    plain = Classifier(_backbone(side), 10, lr=LR)
    torch.manual_seed(0)
    regularized = ExplanationRegularizedClassifier(
        _backbone(side), 10, penalty_weight=weight, lr=LR
    )

    # Trainer steps, interleaved epoch by epoch (first steps of each fit are warm-up).
    times: dict[str, list[float]] = {"plain": [], "regularized": []}
    for r in range(rounds):
        order = [("plain", plain), ("regularized", regularized)]
        for name, module in order if r % 2 == 0 else order[::-1]:
            timer = _StepTimer()
            _trainer(1, [timer]).fit(module, datamodule=data)
            times[name] += timer.times[2:]
    trainer_ratio = statistics.median(times["regularized"]) / statistics.median(times["plain"])

    # Bare steps, interleaved step by step.
    batches = list(data.train_dataloader())
    opts = {
        "plain": plain.configure_optimizers(),
        "regularized": regularized.configure_optimizers(),
    }
    steps = {
        "plain": lambda b: F.cross_entropy(plain(b[0]), b[1]),
        "regularized": lambda b: regularized.compute_loss(*b)["loss"],
    }
    bare: dict[str, list[float]] = {"plain": [], "regularized": []}
    for i in range(bare_steps):
        batch = batches[i % len(batches)]
        names = ["plain", "regularized"] if i % 2 == 0 else ["regularized", "plain"]
        for name in names:
            start = time.perf_counter()
            opts[name].zero_grad(set_to_none=True)
            steps[name](batch).backward()
            opts[name].step()
            bare[name].append(time.perf_counter() - start)
    bare_ratio = statistics.median(bare["regularized"][5:]) / statistics.median(bare["plain"][5:])

    plain.train()
    regularized.train()
    mem_plain = _step_memory(plain, opts["plain"], batches[0][:2], steps["plain"])
    mem_reg = _step_memory(regularized, opts["regularized"], batches[0], steps["regularized"])
    return {
        "trainer step ms (plain)": 1e3 * statistics.median(times["plain"]),
        "trainer step ms (regularized)": 1e3 * statistics.median(times["regularized"]),
        "trainer step ratio": trainer_ratio,
        "bare step ms (plain)": 1e3 * statistics.median(bare["plain"][5:]),
        "bare step ms (regularized)": 1e3 * statistics.median(bare["regularized"][5:]),
        "bare step ratio": bare_ratio,
        "peak KiB (plain)": mem_plain[0] / 1024,
        "peak KiB (regularized)": mem_reg[0] / 1024,
        "peak memory ratio": mem_reg[0] / mem_plain[0],
        "saved-for-backward ratio": mem_reg[1] / mem_plain[1],
    }


def _step_memory(module: nn.Module, opt: torch.optim.Optimizer, batch, loss_fn) -> tuple[int, int]:
    """(peak bytes, saved-for-backward bytes) of one training step, counted by storage."""

    def key(t: Tensor) -> int:
        return t.untyped_storage().data_ptr()

    saved: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        saved[key(t)] = t.untyped_storage().nbytes()
        return t

    opt.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn(batch)
    loss.backward()  # gradients exist from here on
    static: dict[int, int] = {}
    tensors = [*module.parameters(), *batch]
    tensors += [p.grad for p in module.parameters() if p.grad is not None]
    tensors += [v for state in opt.state.values() for v in state.values() if torch.is_tensor(v)]
    for t in tensors:
        static[key(t)] = t.untyped_storage().nbytes()
    activations = sum(v for k, v in saved.items() if k not in static)
    opt.zero_grad(set_to_none=True)
    return sum(static.values()) + activations, activations


def _print_accuracy(results: dict[str, list[dict[str, float]]], seeds: list[int]) -> None:
    columns = list(next(iter(results.values()))[0])
    print(f"\nAccuracy and reliance on the decoy ({len(seeds)} seeds: mean ± std)")
    print(f"{'model':<16}" + "".join(f"{c:>20}" for c in columns))
    for name, rows in results.items():
        cells = []
        for c in columns:
            values = [r[c] for r in rows]
            scale = 100.0 if "acc" in c else 1.0
            mean = statistics.mean(values) * scale
            std = (statistics.stdev(values) if len(values) > 1 else 0.0) * scale
            cells.append(
                f"{mean:>12.2f} ± {std:<5.2f}" if scale == 100 else f"{mean:>12.4f} ± {std:<5.3f}"
            )
        print(f"{name:<16}" + "".join(f"{c:>20}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--penalty-weight", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=6, help="interleaved timing epochs per model")
    parser.add_argument("--bare-steps", type=int, default=300)
    args = parser.parse_args()
    _quiet()
    torch.set_num_threads(1)
    seeds = list(range(args.seeds))
    start = time.perf_counter()
    results = run_accuracy(seeds, args.epochs, args.penalty_weight)
    _print_accuracy(results, seeds)

    def mean(name: str, column: str) -> float:
        return 100 * statistics.mean(r[column] for r in results[name])

    gap = mean("no decoy", "decoy-test acc") - mean("regularized", "decoy-test acc")
    loss = mean("no decoy", "decoy-test acc") - mean("plain", "decoy-test acc")
    print(f"\nregularized vs no-decoy decoy-test accuracy gap: {gap:+.2f} points (target <= 1.5)")
    print(f"plain model's loss vs no-decoy:                  {loss:+.2f} points (target >= 15)")

    cost = run_cost(args.penalty_weight, args.rounds, args.bare_steps)
    print("\nCost, regularized / plain (MLP, batch 64, 1 CPU thread; medians, interleaved)")
    for key, value in cost.items():
        print(f"  {key:<32}{value:10.3f}")
    print("  targets: trainer step ratio <= 1.5, peak memory ratio <= 2")
    print(f"\ntotal time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
