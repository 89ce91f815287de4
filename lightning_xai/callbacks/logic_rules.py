"""Log the logic rules of a logic explainer during ``fit``, ``validate`` and ``test``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch import Tensor
from torch.utils.data import DataLoader
from typing_extensions import override

from lightning_xai.callbacks.base import STAGES, Stage, XAICallback
from lightning_xai.logic.extraction import ExtractionOptions
from lightning_xai.logic.rule import Rule, rules_to_markdown

__all__ = ["LogicRuleLogger"]

Split = Literal["train", "val"]


class LogicRuleLogger(XAICallback):
    """Extract one logic rule per class from a logic explainer and log it.

    At the end of validation epochs (``fit``, ``validate``) and of the test epoch (``test``), on
    global rank zero, it calls ``pl_module.explain`` (see
    :meth:`~lightning_xai.modules.LogicExplainer.explain`) with the rows of ``fit_splits``
    (training and validation by default) to choose the rules, and measures them on the
    validation rows (``fit``/``validate``) or the test rows (``test``). Test rows never
    influence which rule is chosen. It logs under ``<stage>/logic_rule_logger/``:

    * ``rules``: a markdown table (class, rule, accuracy, fidelity, complexity) as TensorBoard
      text, also saved as ``.md``;
    * ``<class>/accuracy``, ``<class>/fidelity``, ``<class>/complexity`` and their means over
      classes (``mean_accuracy``, ...) as scalars;
    * ``xai/logic_rule_logger/<stage>/epoch<E>/rules.json`` with every rule (formula, LaTeX,
      markdown, metrics and a structured form that :meth:`Rule.from_dict` reads back), and
      ``history.json`` with all runs so far.

    The history (:attr:`history`) is part of the callback state, so it survives a resume from
    a checkpoint.

    Args:
        stages: the trainer entry points in which to run.
        every_n_epochs: during ``fit``, run every n-th epoch.
        fit_splits: the splits whose rows choose the rules (any of ``"train"``, ``"val"``).
        options: rule extraction settings (:class:`~lightning_xai.logic.ExtractionOptions`).
        batch_size: rows per forward pass while reading the splits.

    Example:
        >>> logger = LogicRuleLogger(stages=("fit", "test"))
        >>> logger.name, logger.fit_splits
        ('logic_rule_logger', ('train', 'val'))
    """

    def __init__(
        self,
        stages: Sequence[Stage] = STAGES,
        every_n_epochs: int = 1,
        fit_splits: Sequence[Split] = ("train", "val"),
        options: ExtractionOptions | None = None,
        batch_size: int = 4096,
    ) -> None:
        super().__init__(stages=stages, every_n_epochs=every_n_epochs, num_samples=1)
        if isinstance(fit_splits, str):
            fit_splits = (fit_splits,)
        if not fit_splits or any(split not in ("train", "val") for split in fit_splits):
            raise MisconfigurationException(
                f"`fit_splits` must be a non-empty subset of ('train', 'val'), got "
                f"{tuple(fit_splits)!r}; test rows are never used to choose rules."
            )
        if options is not None and not isinstance(options, ExtractionOptions):
            raise MisconfigurationException(
                f"`options` must be an ExtractionOptions, got {type(options).__name__}."
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise MisconfigurationException(
                f"`batch_size` must be a positive int, got {batch_size!r}."
            )
        self.fit_splits = tuple(dict.fromkeys(fit_splits))
        self.options = options
        self.batch_size = batch_size
        self.history: list[dict[str, Any]] = []
        self.rules: list[Rule] = []

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not callable(getattr(pl_module, "explain", None)):
            raise MisconfigurationException(
                "LogicRuleLogger needs a module with an "
                "`explain(x, y, eval_x=, eval_y=, options=)` method such as "
                f"lightning_xai.modules.LogicExplainer's; got {type(pl_module).__name__}."
            )

    def _rows(self, trainer: pl.Trainer, split: str) -> tuple[Tensor, Tensor]:
        dataset = self.dataset_of(trainer, split)  # type: ignore[arg-type]
        xs, ys = [], []
        for batch in DataLoader(dataset, batch_size=self.batch_size, shuffle=False):
            xs.append(batch[0].detach().cpu())
            ys.append(batch[1].detach().cpu())
        return torch.cat(xs), torch.cat(ys)

    @override
    def explain(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, batch: Any
    ) -> None:
        fit_rows = [self._rows(trainer, split) for split in self.fit_splits]
        x = torch.cat([rows[0] for rows in fit_rows])
        y = torch.cat([rows[1] for rows in fit_rows])
        eval_x, eval_y = self._rows(trainer, "test" if stage == "test" else "val")
        rules = pl_module.explain(x, y, eval_x=eval_x, eval_y=eval_y, options=self.options)
        self.rules = list(rules)
        self._report(trainer, stage, self.rules)

    def _report(self, trainer: pl.Trainer, stage: str, rules: list[Rule]) -> None:
        reporter = self.reporter(trainer)
        step, epoch = self.step(trainer), int(trainer.current_epoch)
        reporter.log_text(self.tag(stage, "rules"), rules_to_markdown(rules), step)
        scalars: dict[str, float] = {}
        for key in ("accuracy", "fidelity", "complexity"):
            values = [getattr(rule, key) for rule in rules]
            for rule, value in zip(rules, values):
                if value is not None:
                    scalars[self.tag(stage, f"{rule.class_name}/{key}")] = float(value)
            measured = [float(v) for v in values if v is not None]
            if measured:
                scalars[self.tag(stage, f"mean_{key}")] = sum(measured) / len(measured)
        reporter.log_scalars(scalars, step)
        entry = {
            "stage": stage,
            "epoch": epoch,
            "step": step,
            "rules": [rule.to_dict() for rule in rules],
        }
        self.history.append(entry)
        reporter.save(f"{stage}/epoch{epoch:04d}/rules.json", entry)
        reporter.save("history.json", self.history)

    @override
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["history"] = list(self.history)
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.history = list(state_dict.get("history", []))
        if self.history:
            self.rules = [Rule.from_dict(data) for data in self.history[-1]["rules"]]
