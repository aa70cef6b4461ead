"""Synthetic image generation: a base Stable Diffusion pipeline plus a LoRA adapter, sampled plane by plane.

``fulora generate`` (``run.generate``) makes the study's recipe in one command: for each plane and sampler,
``per_plane`` images from the study's prompt, each from its own seed, written through
``fulora_data.generated.GeneratedWriter`` with a full ``GenerationRecord``. Modules:

``config``   the run's options, the samplers, the seed rule and the plan (no torch)
``samplers`` A1111's samplers as diffusers scheduler settings and time grids (numpy; ``docs/generation.md``)
``pipeline`` loading the base model and the adapter, and sampling one batch (torch, diffusers)
``run``      the resumable, distributed run: plan, per-process parts, merge, contact sheet, card, audit
``card``     the contact sheet and the generation card
"""

from fulora_data.generation.config import PRESETS, SAMPLERS, GenerateConfig, image_seed

__all__ = ["PRESETS", "SAMPLERS", "GenerateConfig", "image_seed"]
