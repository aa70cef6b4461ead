"""The study's report: Markdown and one self-contained HTML page, checked in a real browser where one is."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest


def test_the_html_report_is_self_contained(smoke_study):
    folder, _, _ = smoke_study
    page = (folder / "report" / "report.html").read_text()
    sources = re.findall(r"""(?:src|href)=['"]([^'"]+)""", page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page
    assert str(folder) not in page  # nothing local: no path of this machine
    assert "<th rowspan='2'>Model</th>" in page and "contact sheet of generate-tiny" in page


def test_the_markdown_report_links_figures_that_exist(smoke_study):
    folder, _, _ = smoke_study
    markdown = (folder / "report" / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert links and all((folder / "report" / link).resolve().is_file() for link in links)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs headless Chromium (apt-get install chromium)")
def test_headless_chromium_renders_the_report_with_its_table_and_images(smoke_study, tmp_path):
    from PIL import Image

    folder, _, _ = smoke_study
    shot = tmp_path / "report.png"
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,1400",
         f"--screenshot={shot}", (folder / "report" / "report.html").as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 1400)
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text, table borders and the contact sheet's pixels
    # the note's yellow box is drawn near the top (the page's CSS was applied)
    top = image.crop((0, 0, 1280, 200))
    assert any(r > 240 and g > 240 and b < 220 for _, (r, g, b) in top.getcolors(maxcolors=1 << 20))


@pytest.mark.slow
def test_a_study_with_the_comparison_shows_fid_kid_per_plane_and_the_tsne_figure(smoke_study, tmp_path):
    """The compare step (random Inception weights at 75 px: the features mean nothing) feeds the report."""
    import shutil

    from fulora_data.demo import demo_changes
    from fulora_data.study.presets import merge
    from fulora_data.study.run import run_study

    folder = tmp_path / "study"
    shutil.copytree(smoke_study[0], folder, ignore=shutil.ignore_patterns("run.lock"))
    compare = {
        "sets": [
            {"set": "african/all:test", "source": "african", "label": "Africa"},
            {"set": "synthetic/generated", "source": "synthetic", "label": "Synthesis"},
            {"set": "spanish/es", "source": "spanish", "label": "Spain"},
        ],
        "per_plane": 2, "image_size": 75, "weights": "random", "bootstrap": 0, "seed": 1234, "download": False,
    }  # fmt: skip
    result = run_study(folder, "smoke", changes=merge(demo_changes(1, 2), {"compare": compare}), log=lambda m: None)
    assert result["ran"] == ["compare", "report"]
    markdown = (folder / "report" / "report.md").read_text()
    assert "## FID and KID per plane" in markdown
    assert "| Fetal brain | Africa vs Synthesis | 2 / 2 |" in markdown
    figure = next(line for line in markdown.splitlines() if line.startswith("![t-SNE"))
    assert (folder / "report" / figure.split("](", 1)[1].rstrip(")")).resolve().is_file()
    page = (folder / "report" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2  # the t-SNE figure and the contact sheet
