"""Train a LoRA adapter of Stable Diffusion 1.5: the ``fulora train lora`` command, runnable under accelerate.

One GPU or the CPU::

    python training/train_lora.py --preset training/configs/lora_r128.yaml --out runs/lora-r128

Several GPUs or nodes (the global batch is ``--batch-size`` times the processes)::

    accelerate launch --num_processes 4 training/train_lora.py --preset r128 --out runs/lora-r128

Every option of ``fulora train lora --help`` applies; the logic lives in ``fulora_data.lora``.
"""

from __future__ import annotations

import sys

from fulora_data.cli import FuloraGroup
from fulora_data.cli.lora import lora


def main(argv: list[str] | None = None) -> int:
    """Run the command with ``argv`` (default: the process's arguments); return its exit status."""
    group = FuloraGroup(commands={"lora": lora})
    try:
        group.main(["lora", *(sys.argv[1:] if argv is None else argv)], prog_name="train_lora.py")
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
