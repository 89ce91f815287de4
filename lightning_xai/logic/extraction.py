"""Rule extraction: from a concept-to-class network to one global DNF rule per class."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import sympy
import torch
from sympy.logic.boolalg import Boolean
from torch import Tensor, nn

from lightning_xai.logic.relevance import concept_relevance
from lightning_xai.logic.rule import Rule, check_concepts
from lightning_xai.logic.simplify import simplify_rule_expr
from lightning_xai.utilities.modes import eval_mode
from lightning_xai.utilities.tensor_checks import (
    check_binary_targets,
    check_class_indices,
    check_finite_rows,
    check_not_empty,
    check_tensor,
    check_threshold,
)

__all__ = ["ExtractionOptions", "class_membership", "explain_class", "extract_rules"]

Task = Literal["multiclass", "multilabel"]
_TASKS = ("multiclass", "multilabel")
#: Cells are encoded as int64 bit sets, one bit per selected concept.
_MAX_CONCEPTS = 30


def class_membership(
    values: Tensor, task: Task, n_classes: int, logits: bool = False, *, name: str = "values"
) -> Tensor:
    """Boolean ``(N, n_classes)`` membership matrix from targets or model outputs.

    Targets are checked first: class indices must lie in ``[0, n_classes)``, multilabel targets
    in [0, 1], and nothing may be NaN or inf (a label outside the classes would otherwise belong
    to no class and make every rule look right).

    Args:
        values: ``multiclass``: class indices ``(N,)`` (or, with ``logits=True``, scores
            ``(N, n_classes)`` whose argmax is the class). ``multilabel``: ``(N, n_classes)``
            0/1 targets (true above 0.5) or, with ``logits=True``, logits (true above 0).
        task: ``"multiclass"`` or ``"multilabel"``.
        n_classes: number of classes.
        logits: whether ``values`` are model outputs rather than targets.
        name: the argument named in error messages.

    Example:
        >>> import torch
        >>> class_membership(torch.tensor([1, 0]), "multiclass", 2)
        tensor([[False,  True],
                [ True, False]])
    """
    _check_task(task)
    values = check_tensor(name, values)
    if task == "multiclass":
        if logits:
            if values.dim() != 2 or values.shape[1] != n_classes:
                raise ValueError(
                    f"Multiclass scores `{name}` must have shape (N, {n_classes}), got "
                    f"{tuple(values.shape)}."
                )
            check_finite_rows(name, values)
            values = values.argmax(dim=1)
        if values.dim() != 1 or values.is_floating_point():
            raise ValueError(
                f"Multiclass targets `{name}` must be integer class indices of shape (N,), got "
                f"{values.dtype} of shape {tuple(values.shape)}; convert them with "
                f"`{name}.long()`."
            )
        check_class_indices(name, values, n_classes)
        return values.unsqueeze(1) == torch.arange(n_classes, device=values.device)
    if values.dim() != 2 or values.shape[1] != n_classes:
        raise ValueError(
            f"Multilabel targets/outputs `{name}` must have shape (N, {n_classes}), got "
            f"{tuple(values.shape)}."
        )
    if values.dtype == torch.bool:
        return values
    if logits:
        check_finite_rows(name, values)
    else:
        check_binary_targets(name, values)
    return values > (0.0 if logits else 0.5)


def _check_task(task: str) -> None:
    if task not in _TASKS:
        raise ValueError(f"`task` must be one of {_TASKS}, got {task!r}.")


@dataclass(frozen=True)
class ExtractionOptions:
    """Settings of rule extraction (see :func:`explain_class` for the steps they control).

    Args:
        relevance_threshold: normalised relevance above which a concept starts in the mask.
        concept_threshold: truth threshold for concepts that are not Boolean, in [0, 1):
            concepts in [0, 1] are true above it. Stored on every extracted
            :class:`~lightning_xai.logic.Rule` (its ``threshold``).
        max_concepts: most concepts one rule may use (the mask never grows past it).
        min_concept_gain: the mask grows by a concept only if it lowers the within-term Gini
            impurity by more than this, and a larger mask is kept only if its rule gets this
            share of rows more right.
        min_term_gain: share of rows a term must newly get right to join the disjunction.
        simplify: whether to minimise the final DNF with sympy.
        simplify_max_symbols: sympy runs only on rules with at most this many symbols.
        simplify_timeout: seconds the sympy step may take (``None``: no limit).

    Example:
        >>> ExtractionOptions(max_concepts=8).max_concepts
        8
    """

    relevance_threshold: float = 0.5
    concept_threshold: float = 0.5
    max_concepts: int = 16
    min_concept_gain: float = 0.002
    min_term_gain: float = 0.0
    simplify: bool = True
    simplify_max_symbols: int = 8
    simplify_timeout: float | None = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.relevance_threshold, bool) or not 0.0 <= self.relevance_threshold < 1.0:
            raise ValueError(
                f"`relevance_threshold` must be in [0, 1), got {self.relevance_threshold!r}; "
                "concepts whose normalised relevance exceeds it start in the mask (0.5 is a "
                "good default)."
            )
        if isinstance(self.concept_threshold, bool) or not isinstance(
            self.concept_threshold, (int, float)
        ):
            raise TypeError(
                f"`concept_threshold` must be a number, got {self.concept_threshold!r}."
            )
        check_threshold("concept_threshold", self.concept_threshold)
        if not isinstance(self.simplify, bool):
            raise TypeError(f"`simplify` must be True or False, got {self.simplify!r}.")
        for name in ("max_concepts", "simplify_max_symbols"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"`{name}` must be an int, got {value!r}.")
        if not 1 <= self.max_concepts <= _MAX_CONCEPTS:
            raise ValueError(
                f"`max_concepts` must be in [1, {_MAX_CONCEPTS}], got {self.max_concepts}."
            )
        for name in ("min_concept_gain", "min_term_gain"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"`{name}` must be a share of rows in [0, 1), got {value!r}.")
        timeout = self.simplify_timeout
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not math.isfinite(timeout)
            or not timeout > 0
        ):
            raise ValueError(
                f"`simplify_timeout` must be a finite positive number of seconds or None (no "
                f"limit), got {timeout!r}."
            )


def _initial_mask(relevance: Tensor, threshold: float, max_concepts: int) -> list[int]:
    """Concepts above ``threshold``, most relevant first (at least one, at most ``max_concepts``)."""
    order = torch.argsort(relevance, descending=True, stable=True)
    size = int((relevance > threshold).sum().clamp(min=1, max=max_concepts))
    return order[:size].tolist()


def _encode(truth: Tensor, selected: Sequence[int]) -> Tensor:
    """Each row's cell: bit ``i`` is the truth of concept ``selected[i]``."""
    return (truth[:, list(selected)].long() * 2 ** torch.arange(len(selected))).sum(dim=1)


def _impurity(codes: Tensor, target: Tensor) -> float:
    """Gini impurity of the target within cells, weighted by cell size."""
    _, inverse = torch.unique(codes, return_inverse=True)
    total = torch.bincount(inverse).double()
    share = torch.bincount(inverse[target], minlength=total.numel()).double() / total
    return float((total * 2 * share * (1 - share)).sum() / codes.numel())


def _expand(cell: int, n_bits: int, negatives: Tensor) -> tuple[int, int]:
    """Drop literals of a positive cell, least relevant first, while no negative cell is covered."""
    care = (1 << n_bits) - 1
    for bit in reversed(range(n_bits)):
        trial = care & ~(1 << bit)
        if not bool(((negatives & trial) == (cell & trial)).any()):
            care = trial
    return care, cell & care


def _local_terms(codes: Tensor, target: Tensor, n_bits: int) -> list[tuple[int, int]]:
    """Pruned local terms (cubes) from the positive rows, as (care, value) bit sets."""
    cells, inverse = torch.unique(codes, return_inverse=True)
    pos = torch.bincount(inverse[target], minlength=cells.numel())
    neg = torch.bincount(inverse[~target], minlength=cells.numel())
    # a term votes positive when its positive rows outnumber its negative rows
    positive_cells = cells[pos > neg]
    support = pos[pos > neg]
    negative_cells = cells[neg >= pos]
    covered = torch.zeros_like(positive_cells, dtype=torch.bool)
    cubes: list[tuple[int, int]] = []
    for index in torch.argsort(support, descending=True, stable=True).tolist():
        if covered[index]:
            continue
        care, value = _expand(int(positive_cells[index]), n_bits, negative_cells)
        cubes.append((care, value))
        covered |= (positive_cells & care) == value
    return cubes


def _aggregate(
    cubes: list[tuple[int, int]], codes: Tensor, target: Tensor, min_gain: float
) -> tuple[list[tuple[int, int]], int]:
    """Greedy disjunction of cubes while it raises the number of rows right; drop redundant ones.

    Returns the chosen cubes and how many rows their disjunction gets right.
    """
    current = torch.zeros_like(target)
    correct = int((current == target).sum())
    if not cubes:
        return [], correct
    member = torch.stack([(codes & care) == value for care, value in cubes], dim=1)
    threshold = min_gain * codes.numel()
    chosen: list[int] = []
    while len(chosen) < len(cubes):
        candidates = member | current.unsqueeze(1)
        scores = (candidates == target.unsqueeze(1)).sum(dim=0)
        if chosen:
            scores[chosen] = -1
        best = int(scores.argmax())
        if int(scores[best]) - correct <= threshold:
            break
        chosen.append(best)
        current = candidates[:, best]
        correct = int(scores[best])
    for index in list(reversed(chosen)):
        rest = [i for i in chosen if i != index]
        without = member[:, rest].any(dim=1) if rest else torch.zeros_like(target)
        remaining = int((without == target).sum())
        if remaining >= correct:
            chosen, correct = rest, remaining
    return [cubes[i] for i in chosen], correct


def _to_expr(cubes: list[tuple[int, int]], symbols: Sequence[sympy.Symbol]) -> Boolean:
    terms = []
    for care, value in cubes:
        literals = [
            symbol if value >> bit & 1 else ~symbol
            for bit, symbol in enumerate(symbols)
            if care >> bit & 1
        ]
        terms.append(sympy.And(*literals))
    return sympy.Or(*terms)


def explain_class(
    concepts: Tensor,
    target: Tensor,
    relevance: Tensor,
    predictions: Tensor | None = None,
    *,
    concept_names: Sequence[str] | None = None,
    class_index: int = 0,
    class_name: str = "",
    options: ExtractionOptions | None = None,
) -> Rule:
    """Global DNF rule for one class from Boolean concepts, labels, predictions and relevance.

    Only rows whose label and prediction agree (the model is right) take part.

    1. **Relevance mask**: the concepts whose normalised relevance exceeds
       ``options.relevance_threshold``, most relevant first.
    2. **Local terms**: each correctly predicted positive row gives the conjunction of the masked
       concepts' literals. Rows with the same term vote; a term is positive when its positive
       rows outnumber its negative ones.
    3. **Literal pruning**: each positive term drops literals, least relevant first, as long as
       it covers no negative term (terms never seen are free); terms already covered by a
       pruned term are skipped.
    4. **Aggregation**: pruned terms are OR-ed greedily while they raise the number of rows the
       rule gets right; terms made redundant are dropped.
    5. **Mask growth**: while the rule is not exact, the concept that best separates the
       classes within the current terms (largest drop of Gini impurity, at least
       ``options.min_concept_gain``) joins the mask and steps 2-4 run again; the smallest mask
       whose rule is clearly best wins. A relevance mask that misses a concept is thus repaired
       from the data, so the threshold needs no tuning.
    6. **Simplification**: sympy minimises the DNF when it is small
       (:func:`~lightning_xai.logic.simplify_rule_expr`).

    Every choice uses only the rows passed in: give it training and validation rows, and keep
    test rows for measuring the rule.

    Args:
        concepts: ``(N, D)`` concept values (Boolean, or true above ``concept_threshold``).
        target: ``(N,)`` Boolean class membership (labels, or predictions to explain the model).
        relevance: ``(D,)`` normalised concept relevance for this class.
        predictions: ``(N,)`` Boolean model membership; ``None`` uses ``target``.
        concept_names: names of the ``D`` concepts (default ``c0``, ``c1``, ...).
        class_index: index of the class.
        class_name: name of the class.
        options: extraction settings (defaults: :class:`ExtractionOptions`).

    Example:
        >>> import torch
        >>> concepts = torch.tensor([[0, 0, 1], [0, 1, 0], [1, 0, 1], [1, 1, 0]]).float()
        >>> target = concepts[:, 0] != concepts[:, 1]
        >>> rule = explain_class(concepts, target, torch.tensor([1.0, 0.9, 0.1]))
        >>> rule.to_markdown(), rule.complexity
        ('(c0 ∧ ¬c1) ∨ (¬c0 ∧ c1)', 4)
    """
    options = options or ExtractionOptions()
    check_concepts("concepts", concepts)
    check_not_empty("concepts", concepts)
    n, d = concepts.shape
    names = tuple(concept_names) if concept_names is not None else tuple(f"c{j}" for j in range(d))
    if len(names) != d:
        raise ValueError(f"`concept_names` has {len(names)} names for {d} concepts.")
    relevance = check_tensor("relevance", relevance)
    if relevance.shape != (d,):
        raise ValueError(f"`relevance` must have shape ({d},), got {tuple(relevance.shape)}.")
    check_finite_rows("relevance", relevance)
    if bool((relevance < 0).any()):
        raise ValueError(
            f"`relevance` must be non-negative (a normalised relevance in [0, 1]), got "
            f"{float(relevance.min())}; pass `concept_relevance(model)[class_index]`."
        )
    for name, values in (("target", target), ("predictions", predictions)):
        if values is not None:
            check_tensor(name, values)
            if values.dtype != torch.bool:
                check_binary_targets(name, values.reshape(-1, 1))
    target = target.reshape(-1).bool().cpu()
    predictions = target if predictions is None else predictions.reshape(-1).bool().cpu()
    if target.numel() != n or predictions.numel() != n:
        raise ValueError(
            f"`target` and `predictions` need one value per row of `concepts` ({n}), got "
            f"{target.numel()} and {predictions.numel()}."
        )
    truth = concepts.cpu()
    if truth.dtype != torch.bool:
        truth = truth > options.concept_threshold
    agree = target == predictions
    selected, cubes = _search(truth[agree], target[agree], relevance.detach().cpu(), options)
    expr = _to_expr(cubes, [sympy.Symbol(names[j]) for j in selected])
    if options.simplify:
        expr = simplify_rule_expr(
            expr, max_symbols=options.simplify_max_symbols, timeout=options.simplify_timeout
        )
    return Rule(expr, names, class_index, class_name, threshold=options.concept_threshold)


def _search(
    truth: Tensor, target: Tensor, relevance: Tensor, options: ExtractionOptions
) -> tuple[list[int], list[tuple[int, int]]]:
    """Best (mask, cubes): start from the relevance mask, grow it while the rule is not exact."""
    relevance = relevance.float()
    selected = _initial_mask(relevance, options.relevance_threshold, options.max_concepts)
    rows = target.numel()
    best: tuple[list[int], list[tuple[int, int]]] = (list(selected), [])
    best_correct = -1
    while True:
        codes = _encode(truth, selected)
        terms = _local_terms(codes, target, len(selected))
        cubes, correct = _aggregate(terms, codes, target, options.min_term_gain)
        if best_correct < 0 or correct > best_correct + options.min_concept_gain * rows:
            best, best_correct = (list(selected), cubes), correct
        if correct == rows or len(selected) >= options.max_concepts:
            return best
        # the concept that best separates the classes within the current cells joins the mask
        current = _impurity(codes, target)
        candidates = [j for j in range(truth.shape[1]) if j not in selected and relevance[j] > 0]
        drops = [current - _impurity(_encode(truth, [*selected, j]), target) for j in candidates]
        if not drops or max(drops) <= options.min_concept_gain:
            return best
        selected.append(candidates[max(range(len(drops)), key=drops.__getitem__)])


def extract_rules(
    model: nn.Module,
    concepts: Tensor,
    target: Tensor | None = None,
    *,
    task: Task = "multiclass",
    concept_names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    options: ExtractionOptions | None = None,
) -> list[Rule]:
    """One rule per class from a concept-to-class ``model`` (see :func:`explain_class`).

    The model maps ``(N, D)`` concepts to ``(N, n_classes)`` logits; its relevance comes from
    :func:`~lightning_xai.logic.concept_relevance`. With ``target=None`` the rules explain the
    model's own predictions. Pass training and validation rows only.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Linear(3, 2)
        >>> rules = extract_rules(model, torch.randint(0, 2, (64, 3)).float())
        >>> len(rules), rules[1].class_name
        (2, 'y1')
    """
    _check_task(task)
    check_concepts("concepts", concepts)
    check_not_empty("concepts", concepts)
    if target is not None and len(check_tensor("target", target)) != len(concepts):
        raise ValueError(
            f"`target` has {len(target)} rows but `concepts` has {len(concepts)}; pass one "
            "target per row."
        )
    with eval_mode(model), torch.no_grad():
        device = next(model.parameters()).device
        logits = model(concepts.to(device)).detach().cpu()
    if logits.dim() != 2:
        raise ValueError(f"`model` must return (N, n_classes) logits, got {tuple(logits.shape)}.")
    check_finite_rows(
        "model",
        logits,
        "its outputs (logits) are not finite on these concepts; check the model's weights "
        "(e.g. a diverged training run) before extracting rules.",
    )
    n_classes = logits.shape[1]
    relevance = concept_relevance(model).cpu()
    if relevance.shape != (n_classes, concepts.shape[1]):
        raise ValueError(
            f"Concept relevance has shape {tuple(relevance.shape)}, expected "
            f"({n_classes}, {concepts.shape[1]}) for this model and these concepts."
        )
    names = list(class_names) if class_names is not None else [f"y{k}" for k in range(n_classes)]
    if len(names) != n_classes:
        raise ValueError(f"`class_names` has {len(names)} names for {n_classes} classes.")
    predicted = class_membership(logits, task, n_classes, logits=True)
    actual = (
        predicted
        if target is None
        else class_membership(target.cpu(), task, n_classes, name="target")
    )
    return [
        explain_class(
            concepts,
            actual[:, k],
            relevance[k],
            predicted[:, k],
            concept_names=concept_names,
            class_index=k,
            class_name=names[k],
            options=options,
        )
        for k in range(n_classes)
    ]
