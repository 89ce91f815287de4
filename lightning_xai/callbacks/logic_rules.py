"""Log the logic rules of a logic explainer during ``fit``, ``validate`` and ``test``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from typing_extensions import override

from lightning_xai.callbacks.base import (
    STAGES,
    ScheduleCallback,
    Stage,
    TrainDataLike,
    _collate_fn,
    check_adapter,
    check_train_data,
)
from lightning_xai.logic.extraction import ExtractionOptions
from lightning_xai.logic.rule import Rule, rules_to_markdown
from lightning_xai.utilities.batches import BatchAdapter, check_labels
from lightning_xai.utilities.modes import eval_mode

__all__ = ["LogicRuleLogger"]

Split = Literal["train", "val"]


class LogicRuleLogger(ScheduleCallback):
    """Extract one logic rule per class from a logic explainer and log it.

    At the end of validation epochs (``fit``, ``validate``) and of the test epoch (``test``), on
    global rank zero, it calls ``pl_module.explain`` (see
    :meth:`~lightning_xai.modules.LogicExplainer.explain`) with the rows of ``fit_splits``
    (training and validation by default) to choose the rules, and measures them on the
    validation rows (``fit``/``validate``) or the test rows (``test``). Test rows never
    influence which rule is chosen. The training rows are found in ``fit``, ``validate`` and
    ``test`` alike (``train_data=``, the datamodule, or the trainer's last fit). It logs under
    ``<stage>/<name>/`` (``name`` defaults to ``logic_rule_logger``):

    * ``rules``: a markdown table (class, rule, accuracy, fidelity, complexity) as TensorBoard
      text, also saved as ``.md``;
    * ``<class>/accuracy``, ``<class>/fidelity``, ``<class>/complexity`` and their means over
      classes (``mean_accuracy``, ...) as scalars;
    * ``xai/<name>/<stage>/epoch<E>/rules.json`` with every rule (formula, LaTeX,
      markdown, metrics and a structured form that :meth:`Rule.from_dict` reads back), and
      ``history.json`` with all runs so far.

    The history (:attr:`history`) is part of the callback state, so it survives a resume from
    a checkpoint. Before the first training step (and at the start of ``validate``/``test``)
    it checks that the rows it needs are reachable, that the concepts of a real batch are
    floats in [0, 1] and that its labels fit the module's outputs.

    **Concept models.** When the module has ``predict_concepts``
    (:class:`~lightning_xai.modules.ConceptBottleneckModel`), batches hold model inputs
    (images, text, ...), not concepts: the rules are extracted from the task head over the
    module's ``concept_names``, chosen on the *predicted* concepts of the ``fit_splits`` rows,
    and scored twice on the evaluation rows: on the predicted concepts (``<class>/accuracy``,
    ``<class>/fidelity``, as for any module) and on the true concepts read from the batch by the
    module's ``concepts=`` reader (``<class>/accuracy_true_concepts``,
    ``<class>/fidelity_true_concepts`` and their means). The markdown shows both tables and
    ``rules.json`` keeps both scores. Inputs and labels are read by the module's ``adapter``
    unless ``adapter`` is given here; the [0, 1] check applies to the concept annotations.

    Args:
        stages: the trainer entry points in which to run.
        every_n_epochs: during ``fit``, run every n-th epoch (``None``: the last one only).
        fit_splits: the splits whose rows choose the rules (any of ``"train"``, ``"val"``).
        options: rule extraction settings (:class:`~lightning_xai.logic.ExtractionOptions`).
        batch_size: rows per forward pass while reading the splits.
        adapter: how to read batches (:class:`~lightning_xai.utilities.BatchAdapter`): the
            explained input holds the concepts, the labels the targets (for concept models:
            the model inputs and the task labels; default: the module's own adapter).
        train_data: the training rows (a Dataset or DataLoader), when neither a datamodule
            nor a previous ``fit`` of the trainer provides them.
        name: the tag and folder component (default ``"logic_rule_logger"``); give each of
            several loggers on one trainer its own name.

    Example:
        >>> logger = LogicRuleLogger(stages=("fit", "test"))
        >>> logger.name, logger.fit_splits
        ('logic_rule_logger', ('train', 'val'))
    """

    def __init__(
        self,
        stages: Sequence[Stage] = STAGES,
        every_n_epochs: int | None = 1,
        fit_splits: Sequence[Split] = ("train", "val"),
        options: ExtractionOptions | None = None,
        batch_size: int = 4096,
        adapter: BatchAdapter | None = None,
        train_data: TrainDataLike = None,
        name: str | None = None,
        verbose: bool = True,
    ) -> None:
        super().__init__(stages=stages, every_n_epochs=every_n_epochs, name=name, verbose=verbose)
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
        check_adapter(adapter, "BatchAdapter(inputs='concepts', labels='labels')")
        check_train_data(train_data)
        self.fit_splits = tuple(dict.fromkeys(fit_splits))
        self.options = options
        self.batch_size = batch_size
        self.adapter = adapter if adapter is not None else BatchAdapter()
        self._adapter_given = adapter is not None
        self.train_data = train_data
        self.history: list[dict[str, Any]] = []
        self.rules: list[Rule] = []
        #: For concept models: the latest rules scored on the true concepts.
        self.rules_on_true_concepts: list[Rule] = []

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)  # distinct names
        if not callable(getattr(pl_module, "explain", None)):
            raise MisconfigurationException(
                "LogicRuleLogger needs a module with an "
                "`explain(x, y, eval_x=, eval_y=, options=)` method such as "
                f"lightning_xai.modules.LogicExplainer's; got {type(pl_module).__name__}."
            )
        if _concept_model(pl_module):
            from lightning_xai.modules.concept_embedding import ConceptEmbeddingModel

            if isinstance(pl_module, ConceptEmbeddingModel):
                raise MisconfigurationException(
                    "LogicRuleLogger cannot read rules from a ConceptEmbeddingModel: its head "
                    "reads concept embeddings, not truth values. Use "
                    "ConceptBottleneckModel(head='logic') for rules over the concepts."
                )
            missing = [m for m in ("concept_reader", "score_rules") if not _has(pl_module, m)]
            if missing:
                raise MisconfigurationException(
                    f"LogicRuleLogger reads rules of a concept model (it has `predict_concepts`) "
                    f"through `concept_reader(batch)` and `score_rules(rules, concepts, labels)`; "
                    f"{type(pl_module).__name__} lacks {missing}. Subclass "
                    "lightning_xai.modules.ConceptBottleneckModel."
                )

    # ------------------------------------------------------------------ data
    def _dataset(self, trainer: pl.Trainer, split: str) -> Dataset:
        if split == "train":
            return self.train_dataset(trainer)
        try:
            return self.dataset_of(trainer, split)  # type: ignore[arg-type]
        except MisconfigurationException:
            if split != "val":
                raise
            raise MisconfigurationException(
                f"LogicRuleLogger chooses rules on `fit_splits={self.fit_splits!r}`, but no "
                "validation rows are reachable: give the trainer validation data (a datamodule "
                "with `val_dataloader`, or fit this trainer first), or use fit_splits=('train',)."
            ) from None

    def _batches(self, dataset: Dataset, limit: int | None = None) -> Any:
        size = self.batch_size if limit is None else min(limit, self.batch_size)
        loader = DataLoader(
            dataset, batch_size=size, shuffle=False, collate_fn=_collate_fn(dataset)
        )
        for i, batch in enumerate(loader):
            yield batch
            if limit is not None and i == 0:
                return

    def _split(self, batch: Any, pl_module: pl.LightningModule, split: str) -> Any:
        try:
            adapted = self.adapter.split(batch, pl_module)
        except ValueError as err:
            raise MisconfigurationException(
                f"LogicRuleLogger cannot read a {split} batch: {err}"
            ) from err
        if len(adapted.inputs) != 1:
            raise MisconfigurationException(
                f"LogicRuleLogger reads one concept tensor per batch, but `adapter` explains "
                f"{len(adapted.inputs)} inputs; choose it with BatchAdapter(inputs=<index or key>)."
            )
        return adapted

    def _rows(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str
    ) -> tuple[Tensor, Tensor]:
        xs, ys = [], []
        for batch in self._batches(self._dataset(trainer, split)):
            adapted = self._split(batch, pl_module, split)
            if adapted.labels is None:
                raise MisconfigurationException(
                    f"LogicRuleLogger found no labels in a {split} batch; point "
                    "`adapter=BatchAdapter(labels=<index or key>)` at them."
                )
            xs.append(adapted.inputs[0].detach().cpu())
            ys.append(adapted.labels.detach().cpu())
        return torch.cat(xs), torch.cat(ys)

    def _concept_read(
        self, batch: Any, pl_module: pl.LightningModule, split: str
    ) -> tuple[Any, Tensor | None]:
        """A concept model's batch: the adapted batch (inputs, task labels) and the true
        concepts."""
        adapter = self.adapter if self._adapter_given else pl_module.adapter
        try:
            adapted = adapter.split(batch, pl_module)
            concepts = pl_module.concept_reader(batch).split(batch).labels
        except ValueError as err:
            raise MisconfigurationException(
                f"LogicRuleLogger cannot read a {split} batch of {type(pl_module).__name__} "
                f"(its `concepts={getattr(pl_module, 'concepts', None)!r}`, the "
                f"{'callback' if self._adapter_given else 'module'}'s adapter): {err}"
            ) from err
        return adapted, concepts

    def _concept_rows(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Predicted concepts, true concepts and task labels of every row of ``split``."""
        predicted, true, labels = [], [], []
        for batch in self._batches(self._dataset(trainer, split)):
            batch = pl.utilities.move_data_to_device(batch, pl_module.device)
            adapted, concepts = self._concept_read(batch, pl_module, split)
            if adapted.labels is None or concepts is None:
                raise MisconfigurationException(
                    f"LogicRuleLogger found no {'labels' if concepts is not None else 'concepts'}"
                    f" in a {split} batch of {type(pl_module).__name__}; point `adapter=` "
                    "(labels) or the module's `concepts=` at them."
                )
            args, kwargs = adapted.arguments()
            with torch.no_grad():
                predicted.append(pl_module.predict_concepts(*args, **kwargs).detach().cpu())
            true.append(concepts.detach().cpu().float())
            labels.append(adapted.labels.detach().cpu())
        return torch.cat(predicted), torch.cat(true), torch.cat(labels)

    # ------------------------------------------------------------------ checks
    @override
    def check(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """The rows are reachable, concepts are floats in [0, 1], labels fit the outputs."""
        splits = set(self.fit_splits) | {"test" if stage == "test" else "val"}
        for split in sorted(splits):
            dataset = self._dataset(trainer, split)
            batch = next(iter(self._batches(dataset, limit=4)), None)
            if batch is None:
                raise MisconfigurationException(
                    f"LogicRuleLogger: the {split} data are empty; there are no rows for rules."
                )
            if _concept_model(pl_module):
                self._check_concept_batch(batch, pl_module, split)
                continue
            adapted = self._split(batch, pl_module, split)
            concepts = adapted.inputs[0]
            if not concepts.is_floating_point():
                raise MisconfigurationException(
                    f"LogicRuleLogger needs concepts as floats in [0, 1], but the {split} batch "
                    f"holds {str(concepts.dtype).replace('torch.', '')} concepts; convert them "
                    "(e.g. `.float()`) in the dataset, or point `adapter=BatchAdapter(inputs=...)` "
                    "at the concept tensor."
                )
            low, high = float(concepts.min()), float(concepts.max())
            if low < 0.0 or high > 1.0 or concepts.isnan().any():
                raise MisconfigurationException(
                    f"LogicRuleLogger needs concepts in [0, 1] (truth degrees), but the {split} "
                    f"batch holds values in [{low:.3g}, {high:.3g}]; squash them (e.g. a sigmoid) "
                    "or point `adapter=BatchAdapter(inputs=...)` at the concept tensor."
                )
            if adapted.labels is None:
                raise MisconfigurationException(
                    f"LogicRuleLogger found no labels in the {split} batch; point "
                    "`adapter=BatchAdapter(labels=<index or key>)` at them."
                )
            with eval_mode(pl_module), torch.no_grad():
                adapted = self._split(
                    pl.utilities.move_data_to_device(batch, pl_module.device), pl_module, split
                )
                scores = adapted.call(pl_module)
            try:
                check_labels(adapted.labels, scores, source=f"{split} labels")
            except ValueError as err:
                raise MisconfigurationException(f"LogicRuleLogger: {err}") from err

    def _check_concept_batch(self, batch: Any, pl_module: pl.LightningModule, split: str) -> None:
        batch = pl.utilities.move_data_to_device(batch, pl_module.device)
        adapted, concepts = self._concept_read(batch, pl_module, split)
        where = f"`concepts={getattr(pl_module, 'concepts', None)!r}` of the module"
        if concepts is None or not concepts.is_floating_point():
            found = None if concepts is None else str(concepts.dtype).replace("torch.", "")
            raise MisconfigurationException(
                f"LogicRuleLogger scores rules on the true concepts, but {where} finds "
                f"{found} concepts in the {split} batch; they must be floats in [0, 1] (NaN for "
                "missing): convert them in the dataset or point `concepts=` at them."
            )
        known = concepts[~concepts.isnan()]
        if known.numel() and (float(known.min()) < 0.0 or float(known.max()) > 1.0):
            raise MisconfigurationException(
                f"LogicRuleLogger needs true concepts in [0, 1], but {where} reads values in "
                f"[{float(known.min()):.3g}, {float(known.max()):.3g}] from the {split} batch; "
                "point `concepts=` at the 0/1 concept annotations."
            )
        if adapted.labels is None:
            raise MisconfigurationException(
                f"LogicRuleLogger found no task labels in the {split} batch; point "
                "`adapter=BatchAdapter(labels=<index or key>)` (here or on the module) at them."
            )
        args, kwargs = adapted.arguments()
        with eval_mode(pl_module), torch.no_grad():
            predicted = pl_module.predict_concepts(*args, **kwargs)
            scores = adapted.call(pl_module)
        if tuple(predicted.shape) != tuple(concepts.shape):
            raise MisconfigurationException(
                f"LogicRuleLogger: the module predicts concepts of shape "
                f"{tuple(predicted.shape)}, but {where} reads {tuple(concepts.shape)} from the "
                f"{split} batch; point `concepts=` at the (N, {predicted.shape[-1]}) annotations."
            )
        try:
            check_labels(adapted.labels, scores, source=f"{split} labels")
        except ValueError as err:
            raise MisconfigurationException(f"LogicRuleLogger: {err}") from err

    # ------------------------------------------------------------------ running
    @override
    def run(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, split: str
    ) -> None:
        if not trainer.is_global_zero:
            return
        if _concept_model(pl_module):
            self._run_concept_model(trainer, pl_module, stage)
            return
        with eval_mode(pl_module):
            fit_rows = [self._rows(trainer, pl_module, name) for name in self.fit_splits]
            x = torch.cat([rows[0] for rows in fit_rows])
            y = torch.cat([rows[1] for rows in fit_rows])
            eval_x, eval_y = self._rows(trainer, pl_module, "test" if stage == "test" else "val")
            rules = pl_module.explain(x, y, eval_x=eval_x, eval_y=eval_y, options=self.options)
        self.rules = list(rules)
        self._report(trainer, stage, self.rules)

    def _run_concept_model(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str
    ) -> None:
        with eval_mode(pl_module):
            fit_rows = [self._concept_rows(trainer, pl_module, name) for name in self.fit_splits]
            predicted = torch.cat([rows[0] for rows in fit_rows])
            labels = torch.cat([rows[2] for rows in fit_rows])
            eval_split = "test" if stage == "test" else "val"
            eval_predicted, eval_true, eval_labels = self._concept_rows(
                trainer, pl_module, eval_split
            )
            rules = pl_module.explain(
                predicted,
                labels,
                eval_x=eval_predicted,
                eval_y=eval_labels,
                options=self.options,
                concepts_given=True,
            )
            on_truth = pl_module.score_rules(rules, eval_true, eval_labels)
        self.rules = list(rules)
        self.rules_on_true_concepts = list(on_truth)
        self._report(trainer, stage, self.rules, self.rules_on_true_concepts)

    def _report(
        self,
        trainer: pl.Trainer,
        stage: str,
        rules: list[Rule],
        on_truth: list[Rule] | None = None,
    ) -> None:
        reporter = self.reporter(trainer)
        step, epoch = self.step(trainer), int(trainer.current_epoch)
        text = rules_to_markdown(rules)
        if on_truth is not None:
            text = (
                "Rules over the predicted concepts, scored on the predicted concepts:\n\n"
                f"{text}\n\nThe same rules scored on the true concepts:\n\n"
                f"{rules_to_markdown(on_truth)}"
            )
        reporter.log_text(self.tag(stage, "rules"), text, step)
        scalars: dict[str, float] = {}
        scored = [(rules, "", ("accuracy", "fidelity", "complexity"))]
        if on_truth is not None:
            scored.append((on_truth, "_true_concepts", ("accuracy", "fidelity")))
        for group, suffix, keys in scored:
            for key in keys:
                values = [getattr(rule, key) for rule in group]
                for rule, value in zip(group, values):
                    if value is not None:
                        scalars[self.tag(stage, f"{rule.class_name}/{key}{suffix}")] = float(value)
                measured = [float(v) for v in values if v is not None]
                if measured:
                    scalars[self.tag(stage, f"mean_{key}{suffix}")] = sum(measured) / len(measured)
        reporter.log_scalars(scalars, step)
        entry: dict[str, Any] = {
            "stage": stage,
            "epoch": epoch,
            "step": step,
            "rules": [rule.to_dict() for rule in rules],
        }
        if on_truth is not None:
            entry["on_true_concepts"] = [
                {"class_name": r.class_name, "accuracy": r.accuracy, "fidelity": r.fidelity}
                for r in on_truth
            ]
        self.history.append(entry)
        reporter.save(f"{stage}/epoch{epoch:04d}/rules.json", entry)
        reporter.save("history.json", self.history)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        if self.history:
            self.rules = [Rule.from_dict(data) for data in self.history[-1]["rules"]]


def _has(module: Any, method: str) -> bool:
    return callable(getattr(module, method, None))


def _concept_model(module: Any) -> bool:
    """Whether ``module`` maps inputs to concepts (rules come from its task head)."""
    return _has(module, "predict_concepts")
