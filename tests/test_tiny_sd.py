"""The tiny SD1.5-shaped pipeline: built from configs, deterministic, saved as a loadable diffusers folder."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from fulora_data import tiny_sd  # noqa: E402
from fulora_data.taxonomy import PROMPTS  # noqa: E402


def test_tokenizer_covers_the_study_prompts_without_unknown_tokens():
    components = tiny_sd.build_tiny_components()
    tokenizer = components["tokenizer"]
    unknown = tokenizer.convert_tokens_to_ids(tokenizer.unk_token)
    for prompt in PROMPTS.values():
        ids = tokenizer(prompt).input_ids
        assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
        assert unknown not in ids[1:-1]
        assert tokenizer.decode(ids[1:-1]).replace(" ", "") == prompt.replace(" ", "")


def test_same_seed_same_weights_and_the_shapes_the_benchmark_names():
    a, b = tiny_sd.build_tiny_components(seed=4), tiny_sd.build_tiny_components(seed=4)
    for name in ("unet", "vae", "text_encoder"):
        for (key, x), (_, y) in zip(a[name].state_dict().items(), b[name].state_dict().items(), strict=True):
            assert torch.equal(x, y), f"{name}.{key}"
    assert tuple(a["unet"].config.block_out_channels) == (32, 64)
    assert a["unet"].config.cross_attention_dim == a["text_encoder"].config.hidden_size == 32


def test_saved_folder_loads_and_generates_a_64px_image(tmp_path):
    folder = tiny_sd.save_tiny_pipeline(tmp_path / "tiny-sd")
    assert (folder / "model_index.json").is_file()
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(
        PROMPTS["Fetal brain"],
        num_inference_steps=2,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images
    assert images.shape == (1, 64, 64, 3)
    assert 0.0 <= images.min() <= images.max() <= 1.0 and images.std() > 0


def test_sd15_shape_has_sd15s_component_configs_and_an_unknown_shape_is_refused():
    unet, vae, text = tiny_sd.SHAPES["sd15"]
    assert (unet["block_out_channels"], unet["cross_attention_dim"]) == ((320, 640, 1280, 1280), 768)
    assert (text["hidden_size"], text["num_hidden_layers"], vae["block_out_channels"][-1]) == (768, 12, 512)
    with pytest.raises(ValueError, match="shape must be one of \\['sd15', 'tiny'\\], got 'sdxl'"):
        tiny_sd.build_tiny_components(0, shape="sdxl")
