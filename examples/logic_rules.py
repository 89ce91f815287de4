"""Logic rules from an entropy-based logic explainer network.

Three classes are defined by DNF rules over 20 random Boolean concepts (13 of them matter).
A LogicExplainer learns them; the LogicRuleLogger extracts one rule per class after every
validation epoch (logged to TensorBoard as a table, with accuracy, fidelity and complexity),
and the final rules are compared with the truth by truth tables.

    python examples/logic_rules.py
    tensorboard --logdir lightning_logs
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from lightning_xai.callbacks import LogicRuleLogger
from lightning_xai.data import DNFDataModule
from lightning_xai.logic import rules_to_markdown
from lightning_xai.modules import LogicExplainer

TRUE_RULES = ["(c0 & c1) | (c2 & ~c3)", "(c4 & ~c5 & c6) | c7", "(c8 & c9) | (~c10 & c11 & c12)"]


def main() -> None:
    pl.seed_everything(0, verbose=False)
    data = DNFDataModule(n_concepts=20, rules=TRUE_RULES, n_samples=5000, batch_size=64)
    model = LogicExplainer(data.n_concepts, data.n_classes, task="multilabel")
    rules_logger = LogicRuleLogger(every_n_epochs=2)
    trainer = pl.Trainer(
        max_epochs=10,
        accelerator="cpu",
        logger=TensorBoardLogger("lightning_logs", name="logic_rules_example"),
        callbacks=[rules_logger],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=data)
    trainer.test(model, datamodule=data, verbose=False)  # rules chosen on train+val, scored on test

    print(rules_to_markdown(rules_logger.rules))
    for rule, truth in zip(rules_logger.rules, data.rules):
        verdict = "equivalent to" if rule.equivalent(truth) else "differs from"
        print(f"{rule.class_name}: {rule} {verdict} the truth {truth}")

    # The same extraction without a Trainer: any concepts, any labels (or none: explain the model).
    x = torch.cat([data.train_dataset.x, data.val_dataset.x])
    y = torch.cat([data.train_dataset.y, data.val_dataset.y])
    rules = model.explain(x, y, eval_x=data.test_dataset.x, eval_y=data.test_dataset.y)
    print("\nLaTeX:", rules[2].to_latex())
    print(f"Logs: {trainer.log_dir}/xai/logic_rule_logger/")


if __name__ == "__main__":
    main()
