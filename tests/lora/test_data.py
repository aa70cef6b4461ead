"""kohya's aspect-ratio buckets (``bucket_no_upscale``, centre crop) and the pixels a bucket gets."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import SHARED_DATA
from PIL import Image

from fulora_data.errors import DataError
from fulora_data.lora.data import Example, bucket_choice, bucket_for, bucket_histogram

STUDY_IMAGES = SHARED_DATA / "fetal_planes_db_sample" / "Images"

# The 100 study images' buckets at 512 px in 64 px steps, worked out by hand from kohya's select_bucket
# (no-upscale branch) for each of the 11 image sizes in the sample:
#   384x259 (2), 640x392 (22), 647x381 (1): under 512**2 pixels, kept, floored -> 384x256, 640x384, 640x320
#   692x480 (2), 768x519 (1), 959x661 (32), 961x663 (5), 1137x787 (26): width rounded to 576 keeps the
#       aspect best (1.5 vs 1.33), height ~390-400 -> 576x384
#   740x448 (6): width 640 (aspect 1.67 vs 1.5 for the height choice), height 387 -> 640x384
#   961x498 (1), 1495x787 (2): height 320 (aspect 1.8 vs 2.2), width 618 / 608 -> 576x320
STUDY_HISTOGRAM = {"640x384": 28, "576x384": 66, "640x320": 1, "576x320": 3, "384x256": 2}


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_959x661_goes_to_kohyas_576x384_resized_to_576x397():
    assert bucket_choice(959, 661, 512, 64) == ((576, 384), (576, 397))
    assert bucket_choice(661, 959, 512, 64) == ((384, 576), (397, 576))


def test_959x661_is_centre_cropped_not_stretched():
    from fulora_data.lora.data import pixels

    # A vertical gradient: row y of the original has value y * 255 / 660.
    rows = np.linspace(0, 255, 661, dtype=np.float64)
    image = np.repeat(rows[:, None], 959, axis=1).round().astype(np.uint8)
    bucket, resized = bucket_choice(959, 661, 512, 64)
    tensor = pixels(_png(image), bucket, resized)
    assert tuple(tensor.shape) == (3, 384, 576)
    values = (tensor[0].numpy() + 1.0) * 127.5

    # 13 of the 397 resized rows are cut: 6 at the top, 7 at the bottom. The first kept row is resized
    # row 6, whose centre lies at original row (6 + 0.5) * 661 / 397 - 0.5.
    def expected(resized_row: int) -> float:
        return ((resized_row + 0.5) * 661 / 397 - 0.5) * 255 / 660

    assert values[0].mean() == pytest.approx(expected(6), abs=0.75)
    assert values[-1].mean() == pytest.approx(expected(389), abs=0.75)
    # A stretch to 384 rows would start at ~0.1 and end at ~254.9.
    assert values[0].mean() > 3.0 and values[-1].mean() < 252.0


def test_an_image_under_the_budget_is_never_upscaled_only_cropped():
    from fulora_data.lora.data import pixels

    assert bucket_choice(300, 200, 512, 64) == ((256, 192), (300, 200))
    assert bucket_for(512, 512, 512, 64) == (512, 512)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (200, 300), dtype=np.uint8)
    tensor = pixels(_png(image), (256, 192), (300, 200))
    values = ((tensor[0].numpy() + 1.0) * 127.5).round().astype(np.uint8)
    # Not resampled at all: the centre 256x192 of the original, 22 columns and 4 rows cut on each side.
    assert np.array_equal(values, image[4:196, 22:278])


def test_an_extreme_aspect_keeps_its_aspect_within_the_budget():
    # 4000x300 (aspect 13.3): rounding the height to 128 keeps the aspect (13.0) better than the width
    # (14.5), so the image becomes 1707x128 and its bucket 1664x128.
    assert bucket_choice(4000, 300, 512, 64) == ((1664, 128), (1707, 128))
    assert bucket_choice(300, 4000, 512, 64) == ((128, 1664), (128, 1707))
    assert 1664 * 128 <= 512 * 512


def test_an_image_thinner_than_one_step_is_refused_with_its_size():
    with pytest.raises(DataError, match="40x300"):
        bucket_choice(40, 300, 512, 64)


def test_without_no_upscale_the_closest_predefined_bucket_is_covered():
    # kohya's predefined buckets for 512 px: 576x448 is the closest in aspect to 959x661 (1.29 vs 1.45);
    # the image is scaled so its height is 448 and its width (650) then cropped.
    assert bucket_choice(959, 661, 512, 64, no_upscale=False) == ((576, 448), (650, 448))


def test_bucket_histogram_counts_images_per_bucket_as_wxh():
    examples = [Example(i, "", (576, 384) if i % 4 else (640, 384), "p") for i in range(8)]
    assert bucket_histogram(examples) == {"640x384": 2, "576x384": 6}


@pytest.mark.skipif(not STUDY_IMAGES.is_dir(), reason="../shared/data/fetal_planes_db_sample is absent")
def test_the_100_study_images_fall_in_kohyas_buckets():
    examples = []
    for index, path in enumerate(sorted(STUDY_IMAGES.glob("*.png"))):
        with Image.open(path) as image:
            bucket, resized = bucket_choice(*image.size, 512, 64)
        examples.append(Example(index, path.stem, bucket, "p", resized))
    assert len(examples) == 100
    assert bucket_histogram(examples) == STUDY_HISTOGRAM


def test_an_image_that_falls_under_one_step_only_once_scaled_says_it_was_scaled():
    with pytest.raises(DataError, match=r"128x96 pixels, scaled to the pixel budget of resolution 64, is smaller than one bucket step"):
        bucket_choice(128, 96, 64, 64)
    with pytest.raises(DataError, match=r"an image of 40x40 pixels is smaller than one bucket step \(64 px\)"):
        bucket_choice(40, 40, 512, 64)
