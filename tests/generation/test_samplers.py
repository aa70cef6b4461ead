"""A1111's samplers (``fulora_data/generation/samplers.py``): time grids against values derived by hand.

The expected values are computed here from the definitions alone, in numpy float64:

* SD 1.x's noise schedule (LDM ``linear_start`` 0.00085, ``linear_end`` 0.012, "scaled linear"):
  ``betas = linspace(sqrt(0.00085), sqrt(0.012), 1000) ** 2``, ``alphas_cumprod = cumprod(1 - betas)``,
  ``sigma(t) = sqrt((1 - alphas_cumprod[t]) / alphas_cumprod[t])``.
* A1111's Euler, schedule type "Automatic": k-diffusion's ``DiscreteSchedule.get_sigmas(n)``:
  ``t = linspace(999, 0, n)``; ``t_to_sigma`` interpolates log sigma linearly between ``floor(t)`` and
  ``ceil(t)``; ``append_zero``.
* A1111's UniPC (``sd_samplers_timesteps_impl.unipc``, defaults bh1, order 3, time_uniform, lower order
  final): continuous times ``linspace(1, 1/1000, n + 1)``; the model sees ``(t - 1/1000) * 1000``, i.e.
  ``linspace(999, 0, n + 1)``; the last point is training step 0 (not sigma 0).

The base is fulora's tiny one, whose scheduler file says ``timestep_spacing: leading`` and
``steps_offset: 1`` (a PNDM config, as SD 1.5's): before this change Euler followed it and started at
sigma 11.03 instead of A1111's 14.61.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fulora_data.cli import main

STEPS = 20


def _sd_sigmas() -> np.ndarray:
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    # LDM computes alphas_cumprod in float64 and registers it as a float32 buffer, which A1111 and
    # k-diffusion read: near t = 0, where 1 - alphas_cumprod is small, that rounding shows (1e-5).
    cumprod = np.cumprod(1.0 - betas).astype(np.float32).astype(np.float64)
    return np.sqrt((1.0 - cumprod) / cumprod)


def _kdiffusion_sigmas(steps: int) -> np.ndarray:
    log_sigmas = np.log(_sd_sigmas())
    t = np.linspace(999, 0, steps)
    low, high = np.floor(t).astype(int), np.ceil(t).astype(int)
    w = t - low
    return np.append(np.exp((1 - w) * log_sigmas[low] + w * log_sigmas[high]), 0.0)


@pytest.fixture(scope="module")
def base_scheduler(tiny_world) -> dict:
    config = json.loads((Path(tiny_world["base"]) / "scheduler" / "scheduler_config.json").read_text())
    assert config["timestep_spacing"] == "leading" and config["steps_offset"] == 1  # what is overridden
    return config


def test_euler_20_step_sigmas_are_kdiffusions_on_a_leading_base(base_scheduler):
    from fulora_data.generation.pipeline import sampler_record

    record = sampler_record("euler", base_scheduler, STEPS)
    expected = _kdiffusion_sigmas(STEPS)
    assert record["scheduler"] == "EulerDiscreteScheduler" and record["a1111"] == "Euler"
    assert len(record["sigmas"]) == STEPS + 1 and record["sigmas"][-1] == 0.0
    np.testing.assert_allclose(record["sigmas"], expected, rtol=2e-6)
    assert record["sigmas"][0] == pytest.approx(14.6146, abs=1e-4)
    # The pipeline is given exactly these sigmas; the UNet sees k-diffusion's t = linspace(999, 0, 20).
    assert record["grid"]["sigmas"] == record["sigmas"]
    np.testing.assert_allclose(record["timesteps"], np.linspace(999, 0, STEPS), atol=2e-3)
    assert record["config"]["timestep_spacing"] == "linspace" and record["config"]["steps_offset"] == 0
    assert record["config"]["use_karras_sigmas"] is False and record["config"]["final_sigmas_type"] == "zero"


def test_euler_sigmas_are_passed_because_diffusers_linspace_interpolates_sigma_linearly(base_scheduler):
    """diffusers' own ``linspace`` Euler interpolates sigma (not log sigma): close, but not k-diffusion's."""
    import diffusers

    from fulora_data.generation.pipeline import sampler_record

    plain = diffusers.EulerDiscreteScheduler.from_config(
        {**base_scheduler, "timestep_spacing": "linspace", "steps_offset": 0}
    )
    plain.set_timesteps(STEPS)
    expected = _kdiffusion_sigmas(STEPS)[:-1]
    theirs = np.asarray(plain.sigmas.tolist()[:-1])
    ours = np.asarray(sampler_record("euler", base_scheduler, STEPS)["sigmas"][:-1])
    assert np.max(np.abs(theirs / expected - 1)) > 1e-5  # the linear-sigma interpolation shows
    assert np.max(np.abs(ours / expected - 1)) < 1e-6


def test_euler_no_longer_follows_the_bases_leading_spacing(base_scheduler):
    import diffusers

    following = diffusers.EulerDiscreteScheduler.from_config(base_scheduler)  # what fulora did before
    following.set_timesteps(STEPS)
    assert following.sigmas[0].item() == pytest.approx(11.0283, abs=1e-4)
    assert following.timesteps[0].item() == 951.0


def test_unipc_20_steps_are_a1111s_time_uniform_grid_rounded_ending_at_step_zero(base_scheduler):
    from fulora_data.generation.pipeline import sampler_record

    record = sampler_record("unipc", base_scheduler, STEPS)
    a1111_times = (np.linspace(1.0, 1.0 / 1000, STEPS + 1) - 1.0 / 1000) * 1000  # the model's time input
    assert record["scheduler"] == "UniPCMultistepScheduler" and record["a1111"] == "UniPC"
    assert record["grid"] == {}
    # diffusers takes integer timesteps: A1111's fractional ones rounded (at most half a step apart).
    timesteps = np.asarray(record["timesteps"])
    assert len(timesteps) == STEPS and np.all(timesteps == np.round(timesteps))
    assert np.max(np.abs(timesteps - a1111_times[:-1])) <= 0.5 + 1e-9  # 499.5 goes to 500 (half to even)
    assert timesteps[0] == 999 and timesteps[-1] == 50
    sigmas = _sd_sigmas()
    expected = np.append(sigmas[timesteps.astype(int)], sigmas[0])  # ends at t = 1/N: step 0, not sigma 0
    # diffusers builds its betas in float32 (A1111's UniPC reads LDM's float64-made ones): 3e-6 apart.
    np.testing.assert_allclose(record["sigmas"], expected, rtol=1e-5)
    config = record["config"]
    assert (config["solver_type"], config["solver_order"], config["lower_order_final"], config["predict_x0"]) == (
        "bh1", 3, True, True)  # fmt: skip
    assert config["final_sigmas_type"] == "sigma_min" and config["disable_corrector"] == []
    assert config["timestep_spacing"] == "linspace" and config["steps_offset"] == 0


def test_ddim_and_dpmpp_2m_use_a1111s_grids(base_scheduler):
    from fulora_data.generation.pipeline import sampler_record

    ddim = sampler_record("ddim", base_scheduler, STEPS)
    # sd_samplers_timesteps.get_timesteps: range(0, 1000, 1000 // steps) + 1, sampled from the last.
    assert ddim["timesteps"] == [float(t + 1) for t in range(0, 1000, 1000 // STEPS)][::-1]
    assert ddim["config"]["set_alpha_to_one"] is False and ddim["config"]["clip_sample"] is False
    dpm = sampler_record("dpmpp-2m", base_scheduler, STEPS)
    assert dpm["grid"]["timesteps"] == [int(t) for t in np.round(np.linspace(999, 0, STEPS))]
    assert dpm["config"]["algorithm_type"] == "dpmsolver++" and dpm["config"]["solver_order"] == 2
    assert dpm["sigmas"][-1] == 0.0
    assert dpm["config"]["lambda_min_clipped"] == "-inf"  # standard JSON: the non-finite float as a string


def test_a_bases_sampling_options_are_ignored_but_its_noise_schedule_is_kept():
    from fulora_data.generation.samplers import scheduler_settings

    base = {"beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear", "use_karras_sigmas": True,
            "timestep_spacing": "trailing", "steps_offset": 1, "solver_order": 1}  # fmt: skip
    settings = scheduler_settings("unipc", base)
    assert settings["beta_start"] == 0.0001 and settings["beta_schedule"] == "linear"
    assert settings["use_karras_sigmas"] is False and settings["timestep_spacing"] == "linspace"
    assert settings["solver_order"] == 3 and settings["steps_offset"] == 0


def test_every_sampler_name_has_its_a1111_sampler():
    from fulora_data.generation.config import SAMPLERS
    from fulora_data.generation.samplers import A1111_SAMPLERS

    assert {name: spec.scheduler for name, spec in A1111_SAMPLERS.items()} == SAMPLERS


def test_a_sampler_a1111_lacks_is_one_sentence_and_nothing_is_written(tiny_world, tmp_path):
    from generate_fixtures import reference_args

    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["generate", *reference_args(tiny_world, out, samplers="euler_a_karras")]
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert error == [
        "Error: unknown sampler 'euler_a_karras'; known samplers: euler, unipc, ddim, dpmpp-2m (A1111's "
        "Euler, UniPC, DDIM, DPM++ 2M, each with A1111's default settings)"
    ]
    assert not out.exists()


def test_steps_beyond_the_bases_training_steps_are_refused_before_any_write(tiny_world, tmp_path):
    from generate_fixtures import reference_args

    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["generate", *reference_args(tiny_world, out, samplers="ddim", steps=2000)]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "--steps 2000 is more than the base model's 1000 training timesteps" in result.output
    assert not out.exists()
    fixed = CliRunner().invoke(
        main, ["generate", *reference_args(tiny_world, out, samplers="ddim", per_plane=1)]
    )
    assert fixed.exit_code == 0, fixed.output


def test_the_manifest_and_card_hold_each_samplers_full_config_and_a_run_repeats_in_plain_diffusers(
    tiny_world, tmp_path
):
    """The recorded config and grid alone, in plain diffusers, give the stored pixels."""
    import diffusers
    import torch
    from generate_fixtures import reference_args
    from PIL import Image

    from fulora_data.generated import iter_images, read_generated
    from fulora_data.generation.config import image_seed
    from fulora_data.taxonomy import prompt_for

    out = tmp_path / "out"
    args = reference_args(tiny_world, out, adapter=None, planes="brain", per_plane=1, steps=4, batch_size=1)
    result = CliRunner().invoke(main, ["generate", *args])
    assert result.exit_code == 0, result.output
    manifest, images = read_generated(out)
    schedulers = manifest["info"]["settings"]["schedulers"]
    assert sorted(schedulers) == ["euler", "unipc"]
    card = (out / "README.md").read_text()
    assert "### Samplers" in card and "UniPCMultistepScheduler" in card and '"solver_type": "bh1"' in card
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(
        tiny_world["base"], safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    stored = {image.record.sampler: data for image, data in iter_images(out, images)}
    for name, record in schedulers.items():
        pipe.scheduler = getattr(diffusers, record["scheduler"]).from_config(record["config"])
        seed = image_seed(7, "Fetal brain", name, 0)
        latents = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(seed))
        timing = record["grid"] or {"num_inference_steps": 4}
        picture = pipe(prompt_for("Fetal brain"), latents=latents, guidance_scale=7.0, height=16, width=16,
                       output_type="np", **timing).images[0]  # fmt: skip
        ours = np.asarray(Image.open(io.BytesIO(stored[record["scheduler"]])).convert("RGB"), dtype=np.int16)
        theirs = np.round(picture * 255).astype(np.int16)
        assert np.max(np.abs(ours - theirs)) <= 1, name
