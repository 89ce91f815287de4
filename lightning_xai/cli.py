"""The ``lightning-xai`` command: a ``LightningCLI`` over every module and datamodule.

Run ``lightning-xai fit --config configs/quickstart.yaml``; ``validate`` and ``test`` work the
same way (pass ``--ckpt_path`` to evaluate a trained checkpoint). Models, datamodules, loggers
and callbacks are given by ``class_path``/``init_args``, so user classes work as well.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningCLI

__all__ = ["build_cli", "main"]


def build_cli(args: Sequence[str] | None = None, run: bool = True) -> LightningCLI:
    """Build (and by default run) the ``lightning-xai`` CLI.

    Args:
        args: command-line arguments (defaults to ``sys.argv[1:]``).
        run: whether to run the subcommand (``False`` only instantiates the classes).
    """
    return LightningCLI(
        pl.LightningModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=list(args) if args is not None else None,
        run=run,
    )


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of the ``lightning-xai`` console script."""
    build_cli(args)


if __name__ == "__main__":  # pragma: no cover
    main()
