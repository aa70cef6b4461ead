"""LoRA fine-tuning of Stable Diffusion 1.5 with diffusers, peft and accelerate: the study's adapters.

One module per concern: ``config`` (the run's settings and the study's presets), ``model`` (base model
loading, LoRA injection and the adapter's state dicts), ``data`` (aspect-ratio buckets, the latent and
text-embedding caches), ``train`` (the loop, checkpoints and outputs) and ``card`` (the model card).
The adapter's on-disk format is ``fulora_data.adapter``; generation reads that, never this package.
"""
