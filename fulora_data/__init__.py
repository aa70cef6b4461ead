"""fulora: synthetic fetal-ultrasound data as Hugging Face datasets (FU-LoRA, Wang et al. 2024).

``import fulora_data`` needs only the core dependencies (datasets, huggingface_hub, click); training,
generation and evaluation import their heavy dependencies when they run.
"""

__version__ = "0.1.0"

from fulora_data.errors import FuloraError  # noqa: E402
from fulora_data.taxonomy import PLANES, PROMPTS  # noqa: E402

__all__ = ["PLANES", "PROMPTS", "FuloraError", "__version__"]
