"""logic."""

from lightning_xai.logic.extraction import (
    ExtractionOptions,
    class_membership,
    explain_class,
    extract_rules,
)
from lightning_xai.logic.relevance import concept_relevance
from lightning_xai.logic.rule import (
    Rule,
    count_literals,
    equivalent,
    evaluate_expr,
    parse_rule,
    rules_to_markdown,
    truth_table,
)
from lightning_xai.logic.simplify import simplify_rule_expr

__all__ = [
    "ExtractionOptions",
    "Rule",
    "class_membership",
    "concept_relevance",
    "count_literals",
    "equivalent",
    "evaluate_expr",
    "explain_class",
    "extract_rules",
    "parse_rule",
    "rules_to_markdown",
    "simplify_rule_expr",
    "truth_table",
]
