"""Logic rules: lightning-xai against torch-explain 1.5.1 on the same trained networks.

For each task, two entropy-based networks (concept layer ``EntropyLinear(d, 10, classes)``,
then 10 → 4 → 1) are trained: one by :class:`~lightning_xai.modules.LogicExplainer` (Lightning,
10 epochs of mini-batches), one with the reference package's own recipe (full-batch AdamW,
BCE + 1e-4 × its entropy loss). Each network exists in both packages' layouts (the reference
``EntropyLinear`` has the same parameters and forward pass; identical logits are checked), so
the extractors explain exactly the same model on exactly the same rows:

* ``lightning-xai``: :func:`~lightning_xai.logic.extract_rules` on the training + validation rows;
* ``torch-explain default``: ``explain_classes`` with its default settings
  (``max_minterm_complexity=1000, topk_explanations=1000, simplify=False``);
* ``torch-explain best``: ``max_minterm_complexity=None, simplify=True``.

Tasks (multilabel, one logit per class, so the reference's ``y_threshold=0`` is the model's
decision): XOR of two concepts plus 8 noise concepts (1000 rows), and three DNF classes over 20
concepts (5000 rows). Each rule is scored on the held-out test rows (accuracy), by its number
of literals (after sympy merges duplicates, and as written), and checked against the true rule
by truth tables (exact). Times are wall-clock extraction times for all classes of a task. Each
reference run happens in a child process and is stopped after ``--timeout`` seconds.

    make bench-deps && python benchmarks/logic.py   # ~10 minutes on 2 CPU cores (timeouts)
    python benchmarks/logic.py --timeout 30         # shorter: cap the slow reference runs
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import re
import time
import warnings
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from lightning_xai.data import DNFDataModule
from lightning_xai.logic import Rule, extract_rules, parse_rule
from lightning_xai.metrics.functional import rule_accuracy
from lightning_xai.modules import LogicExplainer

TASKS = {
    "xor + 8 noise concepts": dict(
        n_concepts=10, rules=["(c0 & ~c1) | (~c0 & c1)"], n_samples=1000
    ),
    "3 DNF classes, 20 concepts": dict(
        n_concepts=20,
        rules=["(c0 & c1) | (c2 & ~c3)", "(c4 & ~c5 & c6) | c7", "(c8 & c9) | (~c10 & c11 & c12)"],
        n_samples=5000,
    ),
}
REFERENCE_SETTINGS = {
    "torch-explain default": {},
    "torch-explain best": dict(max_minterm_complexity=None, simplify=True),
}


def _quiet() -> None:
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _train(dm: DNFDataModule, epochs: int, seed: int) -> LogicExplainer:
    pl.seed_everything(seed, verbose=False)
    module = LogicExplainer(dm.n_concepts, dm.n_classes, task="multilabel")
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=dm)
    return module.eval()


def _reference_network(n_concepts: int, n_classes: int) -> nn.Module:
    from torch_explain.nn import EntropyLinear as ReferenceEntropyLinear

    return nn.Sequential(
        ReferenceEntropyLinear(n_concepts, 10, n_classes, temperature=0.6),
        nn.LeakyReLU(),
        nn.Linear(10, 4),
        nn.LeakyReLU(),
        nn.Linear(4, 1),
    )


def _train_reference_way(dm: DNFDataModule, epochs: int, seed: int) -> LogicExplainer:
    """The reference package's recipe: full-batch AdamW on the training rows, BCE + 1e-4 entropy."""
    from torch_explain.nn.functional import entropy_logic_loss

    torch.manual_seed(seed)
    network = _reference_network(dm.n_concepts, dm.n_classes)
    optimizer = torch.optim.AdamW(network.parameters(), lr=0.01)
    x, y = dm.train_dataset.x, dm.train_dataset.y
    for _ in range(epochs):
        optimizer.zero_grad()
        logits = network(x).squeeze(-1)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, y)
        (loss + 1e-4 * entropy_logic_loss(network)).backward()
        optimizer.step()
    module = LogicExplainer(dm.n_concepts, dm.n_classes, task="multilabel")
    state = {k: v.detach().clone() for k, v in network.state_dict().items()}
    state["0.bias"] = state["0.bias"].squeeze(1)
    module.model.load_state_dict(state)
    return module.eval()


def _reference_state(module: LogicExplainer) -> dict[str, torch.Tensor]:
    """Our weights in the reference layout (its bias has an extra middle dimension)."""
    state = {k: v.detach().clone() for k, v in module.model.state_dict().items()}
    state["0.bias"] = state["0.bias"].unsqueeze(1)
    return state


def _reference_worker(queue: Any, payload: dict[str, Any]) -> None:
    _quiet()
    torch.set_num_threads(payload["threads"])
    from torch_explain.logic.nn.entropy import explain_classes

    model = _reference_network(payload["n_concepts"], payload["n_classes"])
    model.load_state_dict(payload["state"])
    start = time.perf_counter()
    explanations, _ = explain_classes(
        model,
        payload["c"],
        payload["y"],
        train_mask=payload["train_mask"],
        val_mask=payload["val_mask"],
        test_mask=payload["test_mask"],
        concept_names=payload["names"],
        class_names=[f"y{k}" for k in range(payload["n_classes"])],
        **payload["settings"],
    )
    elapsed = time.perf_counter() - start
    queue.put((elapsed, [explanations[str(k)]["explanation"] for k in range(payload["n_classes"])]))


def _run_reference(payload: dict[str, Any], timeout: float) -> tuple[float | None, list[str]]:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_reference_worker, args=(queue, payload))
    start = time.perf_counter()
    process.start()
    while process.is_alive() and queue.empty() and time.perf_counter() - start < timeout:
        time.sleep(0.05)
    if queue.empty():
        process.terminate()
        process.join()
        return None, []
    result = queue.get()
    process.join()
    return result


def _score(
    text: str, names: list[str], k: int, x: torch.Tensor, y: torch.Tensor, truth: Rule
) -> tuple[str, float, int, int, bool]:
    """Rule text, test accuracy, literals (sympy, duplicates merged), literals as written, exact."""
    if not text:
        return "(none)", 0.0, 0, 0, False
    written = len(re.findall(r"\b(?:" + "|".join(map(re.escape, names)) + r")\b", text))
    rule = Rule(parse_rule(text, names), names, k)
    accuracy = float(rule_accuracy(rule, x, y))
    return str(rule), accuracy, rule.complexity, written, rule.equivalent(truth)


def _report(method: str, elapsed: float | None, rows: list[tuple], timeout: float) -> None:
    took = f"{elapsed:.3f} s" if elapsed is not None else f"> {timeout:.0f} s (stopped)"
    exact = f"{sum(row[4] for row in rows)}/{len(rows)}" if rows else "-"
    print(f"    {method:<22} extraction {took:<20} exact {exact}")
    for k, (text, accuracy, literals, written, equal) in enumerate(rows):
        shown = text if len(text) <= 80 else text[:77] + "..."
        mark = "exact" if equal else "WRONG"
        print(
            f"      y{k}: acc {accuracy:.3f}  literals {literals:>4} ({written:>4} written)  {mark}  {shown}"
        )


def _compare(dm: DNFDataModule, module: LogicExplainer, args: argparse.Namespace) -> None:
    names = list(dm.concept_names)
    splits = (dm.train_dataset, dm.val_dataset, dm.test_dataset)
    c = torch.cat([d.x for d in splits])
    y = torch.cat([d.y for d in splits])
    n_train, n_val = len(splits[0]), len(splits[1])
    fit_x, fit_y = c[: n_train + n_val], y[: n_train + n_val]
    test_x, test_y = c[n_train + n_val :], y[n_train + n_val :]

    reference = _reference_network(dm.n_concepts, dm.n_classes)
    reference.load_state_dict(_reference_state(module))
    with torch.no_grad():
        same = torch.allclose(reference(c).squeeze(-1), module(c), atol=1e-5)
        model_acc = float(((module(test_x) > 0) == (test_y > 0.5)).float().mean())
    print(f"    model test accuracy {model_acc:.3f}; reference copy gives the same logits: {same}")

    start = time.perf_counter()
    rules = extract_rules(module.model, fit_x, fit_y, task="multilabel", concept_names=names)
    elapsed = time.perf_counter() - start
    truths = dm.rules
    rows = [_score(str(r), names, r.class_index, test_x, test_y, t) for r, t in zip(rules, truths)]
    _report("lightning-xai", elapsed, rows, args.timeout)

    for method, settings in REFERENCE_SETTINGS.items():
        payload = dict(
            state=_reference_state(module),
            n_concepts=dm.n_concepts,
            n_classes=dm.n_classes,
            c=c,
            y=y,
            train_mask=torch.arange(n_train),
            val_mask=torch.arange(n_train, n_train + n_val),
            test_mask=torch.arange(n_train + n_val, len(c)),
            names=names,
            settings=settings,
            threads=args.threads,
        )
        elapsed, texts = _run_reference(payload, args.timeout)
        rows = [
            _score(text, names, k, test_x, test_y, truth)
            for k, (text, truth) in enumerate(zip(texts, truths))
        ]
        _report(method, elapsed, rows, args.timeout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10, help="Lightning training epochs")
    parser.add_argument(
        "--reference-epochs", type=int, default=1000, help="full-batch epochs, reference recipe"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=180.0, help="per reference run (s)")
    args = parser.parse_args()
    _quiet()
    torch.set_num_threads(args.threads)
    import torch_explain

    print(f"torch-explain {torch_explain.__version__}, torch threads {args.threads}")
    for task, spec in TASKS.items():
        dm = DNFDataModule(**spec, batch_size=64, seed=args.seed)
        dm.setup()
        print(f"\n{task} ({dm.n_samples} rows; true rules: {', '.join(map(str, dm.rules))})")
        print(f"  network trained by LogicExplainer ({args.epochs} epochs, batches of 64)")
        _compare(dm, _train(dm, args.epochs, args.seed), args)
        print(f"  network trained the reference way ({args.reference_epochs} full-batch epochs)")
        _compare(dm, _train_reference_way(dm, args.reference_epochs, args.seed), args)


if __name__ == "__main__":
    main()
