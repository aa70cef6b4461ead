"""A1111's samplers as diffusers schedulers: every setting explicit, whatever the base's scheduler file says.

The study sampled in the AUTOMATIC1111 WebUI. Each fulora sampler name builds its diffusers scheduler from
two parts only:

* the base model's **noise schedule** (``NOISE_SCHEDULE``: betas, number of training steps, prediction
  type), which A1111 also reads from the checkpoint (its ``alphas_cumprod``);
* **A1111's sampler settings**, written out in ``A1111_SAMPLERS`` (its defaults in ``shared_options``:
  schedule type "Automatic", ``eta_ddim`` 0, ``s_churn`` 0, UniPC ``bh1`` / order 3 / ``time_uniform`` /
  lower order final, ``enable_quantization`` off). Nothing else of the base's scheduler file is used:
  a base saved with ``timestep_spacing: leading`` or ``use_karras_sigmas: true`` samples as A1111 does.

Where A1111's time grid cannot be expressed by a diffusers option it is passed to the pipeline exactly
(``grid``): Euler gets k-diffusion's sigmas (``DiscreteSchedule.get_sigmas``: ``t = linspace(T - 1, 0,
steps)``, log-sigma interpolated, then 0), DPM++ 2M gets that grid's timesteps (rounded: diffusers' DPM
solver takes integer timesteps). ``docs/generation.md`` has the table of every setting and each remaining
difference. This module needs numpy only; ``pipeline.build_scheduler`` makes the diffusers object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fulora_data.errors import ConfigError

NOISE_SCHEDULE = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas",
                  "prediction_type")  # fmt: skip
"""The keys of a base's scheduler file that describe the model (how it was trained), kept as they are."""

SD_NOISE_SCHEDULE: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "trained_betas": None,
    "prediction_type": "epsilon",
}
"""SD 1.x's noise schedule (LDM's ``linear_start``/``linear_end``), used for keys a base's file lacks."""


@dataclass(frozen=True)
class A1111Sampler:
    """One sampler of A1111 and the diffusers scheduler that reproduces it.

    Attributes:
        label: A1111's name for it (the WebUI's sampler list and the images' infotext).
        source: Where A1111 implements it.
        scheduler: The diffusers scheduler class.
        settings: Every option of that class besides the noise schedule, set as A1111 samples.
        grid: ``"sigmas"`` or ``"timesteps"`` when A1111's time grid is passed to the pipeline explicitly,
            ``""`` when the settings alone give it.
    """

    label: str
    source: str
    scheduler: str
    settings: dict[str, Any] = field(default_factory=dict)
    grid: str = ""


_NO_SIGMA_SCHEDULES = {
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
    "use_beta_sigmas": False,
    "rescale_betas_zero_snr": False,
}

A1111_SAMPLERS: dict[str, A1111Sampler] = {
    "euler": A1111Sampler(
        label="Euler",
        source="k-diffusion sample_euler (modules/sd_samplers_kdiffusion.py), schedule type Automatic",
        scheduler="EulerDiscreteScheduler",
        settings={
            **_NO_SIGMA_SCHEDULES,
            "timestep_spacing": "linspace",  # t from T - 1 down to 0; init noise times sigmas[0]
            "steps_offset": 0,
            "interpolation_type": "linear",  # unused: the sigmas are passed (log-sigma interpolated)
            "timestep_type": "discrete",
            "final_sigmas_type": "zero",  # k-diffusion's append_zero
            "sigma_min": None,
            "sigma_max": None,
        },
        grid="sigmas",
    ),
    "unipc": A1111Sampler(
        label="UniPC",
        source="modules/models/diffusion/uni_pc (sd_samplers_timesteps_impl.unipc), shared_options defaults",
        scheduler="UniPCMultistepScheduler",
        settings={
            **_NO_SIGMA_SCHEDULES,
            "solver_order": 3,  # uni_pc_order
            "solver_type": "bh1",  # uni_pc_variant
            "lower_order_final": True,  # uni_pc_lower_order_final
            "predict_x0": True,  # UniPC(predict_x0=True)
            "thresholding": False,
            "disable_corrector": [],  # the corrector runs on every step but the last, as A1111's
            "timestep_spacing": "linspace",  # uni_pc_skip_type time_uniform from t = 1 (model time T - 1)
            "steps_offset": 0,
            "final_sigmas_type": "sigma_min",  # ends at t = 1/N (model time 0), not at sigma 0
            "use_flow_sigmas": False,
            "use_dynamic_shifting": False,
        },
    ),
    "ddim": A1111Sampler(
        label="DDIM",
        source="modules/sd_samplers_timesteps.py (timesteps range(0, T, T // steps) + 1), eta_ddim 0",
        scheduler="DDIMScheduler",
        settings={
            "timestep_spacing": "leading",
            "steps_offset": 1,
            "set_alpha_to_one": False,  # the last step goes to alphas_cumprod[0]
            "clip_sample": False,
            "thresholding": False,
            "rescale_betas_zero_snr": False,
        },
    ),
    "dpmpp-2m": A1111Sampler(
        label="DPM++ 2M",
        source="k-diffusion sample_dpmpp_2m (modules/sd_samplers_kdiffusion.py), schedule type Automatic",
        scheduler="DPMSolverMultistepScheduler",
        settings={
            **_NO_SIGMA_SCHEDULES,
            "algorithm_type": "dpmsolver++",
            "solver_order": 2,
            "solver_type": "midpoint",
            "lower_order_final": True,
            "euler_at_final": False,
            "final_sigmas_type": "zero",  # the last step goes to sigma 0 (k-diffusion: x = denoised)
            "thresholding": False,
            "use_lu_lambdas": False,
            "timestep_spacing": "linspace",  # unused: the timesteps are passed
            "steps_offset": 0,
            "variance_type": None,
        },
        grid="timesteps",
    ),
}
"""fulora's sampler names -> A1111's sampler and the diffusers settings that reproduce it."""


def noise_schedule(base_config: dict[str, Any]) -> dict[str, Any]:
    """The model's noise schedule from a base's scheduler file (SD 1.x's for keys it lacks).

    Raises:
        ConfigError: If the schedule is one A1111's samplers are not defined for.
    """
    schedule = {key: base_config.get(key, SD_NOISE_SCHEDULE[key]) for key in NOISE_SCHEDULE}
    if schedule["trained_betas"] is None and schedule["beta_schedule"] not in ("linear", "scaled_linear"):
        raise ConfigError(
            f"the base model's scheduler has beta_schedule {schedule['beta_schedule']!r}; fulora's A1111 "
            "samplers are defined for 'scaled_linear' (SD 1.x) and 'linear' noise schedules"
        )
    return schedule


def scheduler_settings(sampler: str, base_config: dict[str, Any]) -> dict[str, Any]:
    """Every option of the sampler's diffusers scheduler: the base's noise schedule plus A1111's settings.

    Raises:
        ConfigError: For a sampler fulora does not have (one sentence naming A1111's that it has).
    """
    spec = a1111_sampler(sampler)
    return {**noise_schedule(base_config), **spec.settings}


def a1111_sampler(sampler: str) -> A1111Sampler:
    """The A1111 sampler behind a fulora sampler name.

    Raises:
        ConfigError: Naming the samplers fulora reproduces.
    """
    if sampler not in A1111_SAMPLERS:
        labels = ", ".join(spec.label for spec in A1111_SAMPLERS.values())
        raise ConfigError(
            f"unknown sampler {sampler!r}; known samplers: {', '.join(A1111_SAMPLERS)} (A1111's {labels}, "
            "each with A1111's default settings)"
        )
    return A1111_SAMPLERS[sampler]


def alphas_cumprod(schedule: dict[str, Any]):
    """The cumulative products of ``1 - beta`` as LDM (and so A1111) computes them: float64, then float32."""
    import numpy as np

    n = int(schedule["num_train_timesteps"])
    if schedule.get("trained_betas") is not None:
        betas = np.asarray(schedule["trained_betas"], dtype=np.float64)
    elif schedule["beta_schedule"] == "scaled_linear":
        betas = (
            np.linspace(schedule["beta_start"] ** 0.5, schedule["beta_end"] ** 0.5, n, dtype=np.float64) ** 2
        )
    else:
        betas = np.linspace(schedule["beta_start"], schedule["beta_end"], n, dtype=np.float64)
    return np.cumprod(1.0 - betas).astype(np.float32)


def kdiffusion_sigmas(schedule: dict[str, Any], steps: int) -> list[float]:
    """k-diffusion's ``DiscreteSchedule.get_sigmas(steps)``: A1111's "Automatic" schedule for Euler.

    ``t = linspace(T - 1, 0, steps)``; each sigma is ``exp`` of the log-sigma interpolated linearly between
    the two neighbouring training steps (``t_to_sigma``); a final 0 is appended. Computed in float32 as
    k-diffusion does on the model's float32 ``alphas_cumprod``.
    """
    import numpy as np

    cumprod = alphas_cumprod(schedule)
    log_sigmas = np.log(((1 - cumprod) / cumprod) ** 0.5).astype(np.float32)
    t = np.linspace(len(cumprod) - 1, 0, steps, dtype=np.float32)
    low, high = np.floor(t).astype(np.int64), np.ceil(t).astype(np.int64)
    w = (t - low).astype(np.float32)
    sigmas = np.exp((1 - w) * log_sigmas[low] + w * log_sigmas[high]).astype(np.float32)
    return [float(s) for s in sigmas] + [0.0]


def grid(sampler: str, base_config: dict[str, Any], steps: int) -> dict[str, list]:
    """What the pipeline is given besides the scheduler: ``{"sigmas": ...}``, ``{"timesteps": ...}`` or ``{}``."""
    spec = a1111_sampler(sampler)
    if not spec.grid:
        return {}
    schedule = noise_schedule(base_config)
    if spec.grid == "sigmas":
        return {"sigmas": kdiffusion_sigmas(schedule, steps)}
    import numpy as np

    # DPM++ 2M on k-diffusion's grid: t = linspace(T - 1, 0, steps); diffusers' solver takes integers.
    t = np.linspace(int(schedule["num_train_timesteps"]) - 1, 0, steps)
    return {"timesteps": [int(x) for x in np.round(t)]}


def check_steps(samplers: tuple[str, ...] | list[str], steps: int, base_config: dict[str, Any]) -> None:
    """Refuse a step count the base's noise schedule cannot give (more steps than training steps).

    Raises:
        ConfigError: Naming ``--steps`` and the limit.
    """
    limit = int(noise_schedule(base_config)["num_train_timesteps"])
    if steps > limit:
        raise ConfigError(
            f"--steps {steps} is more than the base model's {limit} training timesteps "
            f"(samplers {', '.join(samplers)}); pass --steps between 1 and {limit}"
        )
