"""fulora: synthetic fetal-ultrasound data as Hugging Face datasets (FU-LoRA, Wang et al. 2024).

``import fulora_data`` needs only the core dependencies (datasets, huggingface_hub, click); training,
generation and evaluation import their heavy dependencies when they run.
"""

__version__ = "0.1.0"

import logging  # noqa: E402


class _BitsandbytesCpuNote(logging.Filter):
    """Drops bitsandbytes' CPU-kernel warning, printed on every run of a CPU-only machine.

    peft and diffusers import bitsandbytes whenever it is installed; on a CPU it then fails to fetch an
    optional 4-bit kernel and logs a warning that concerns 4-bit quantisation, which fulora never uses.
    The filter sits on bitsandbytes' logger, so only that message is dropped; bitsandbytes is not imported.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to load CPU gemm_4bit_forward")


logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_BitsandbytesCpuNote())

from fulora_data.errors import FuloraError  # noqa: E402
from fulora_data.taxonomy import PLANES, PROMPTS  # noqa: E402

__all__ = ["PLANES", "PROMPTS", "FuloraError", "__version__"]
