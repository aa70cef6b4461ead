"""Train a LoRA adapter of Stable Diffusion 1.5: the ``fulora train lora`` command, runnable under accelerate.

One GPU or the CPU::

    python training/train_lora.py --preset training/configs/lora_r128.yaml --out runs/lora-r128

Several GPUs or nodes (the global batch is ``--batch-size`` times the processes)::

    accelerate launch --num_processes 4 training/train_lora.py --preset r128 --out runs/lora-r128

Every option of ``fulora train lora --help`` applies; the logic lives in ``fulora_data.lora``.
"""

from __future__ import annotations

import sys

import click

from fulora_data.cli.lora import lora
from fulora_data.errors import FuloraError


def main(argv: list[str] | None = None) -> int:
    """Run the command with ``argv`` (default: the process's arguments); return its exit status."""
    try:
        lora.main(sys.argv[1:] if argv is None else argv, prog_name="train_lora.py", standalone_mode=False)
    except FuloraError as err:  # one line, no traceback, as the fulora command reports it
        click.echo(f"Error: {err}", err=True)
        return 1
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except click.exceptions.Exit as exit_:
        return exit_.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
