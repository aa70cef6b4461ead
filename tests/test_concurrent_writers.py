"""Concurrent writers to one cache entry or one export are serialised."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from fulora_data import samples
from fulora_data.export import MANIFEST, export
from fulora_data.hub import read_export_manifest

# Each process is slowed at the point where two writers used to collide, so that they overlap for sure.
_SLOW_PREPARE = """
import sys, time
import fulora_data.archives as archives
real = archives._extract_tar
def slow(*args, **kwargs):
    real(*args, **kwargs)
    time.sleep(2)
archives._extract_tar = slow
from fulora_data.prepare import prepare
splits = prepare("african", sys.argv[1], source=sys.argv[2], cache_dir=sys.argv[3])
print(sum(len(d) for d in splits.values()))
"""

_SLOW_EXPORT = """
import sys, time
import fulora_data.export as ex
real = ex.write_parquet_shards
def slow(*args, **kwargs):
    time.sleep(float(sys.argv[5]))
    return real(*args, **kwargs)
ex.write_parquet_shards = slow
ex.export("spanish", [sys.argv[1]], sys.argv[2], source=sys.argv[3], cache_dir=sys.argv[4])
"""


def _together(script, *argvs):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, *map(str, argv)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    return [out for out, _ in outs]


def test_two_prepares_from_one_archive_into_one_cache(tmp_path):
    archive = samples.write_african_source(tmp_path / "src", patients_per_country=2, archive=True)
    cache = tmp_path / "cache"
    outs = _together(_SLOW_PREPARE, ("all", archive, cache), ("Ghana", archive, cache))
    assert int(outs[0]) > int(outs[1]) > 0
    assert len([p for p in (cache / "fulora_extracted").iterdir() if not p.name.startswith(".")]) == 1


def test_two_exports_into_one_existing_export(tmp_path):
    source = samples.write_spanish_source(tmp_path / "src", per_plane=2, test_per_plane=1)
    cache, out = tmp_path / "cache", tmp_path / "out"
    export("spanish", ["es"], out, source=source, cache_dir=cache)
    export("spanish", ["full"], tmp_path / "warm", source=source, cache_dir=cache)  # both only export now
    # The re-export of es starts with the same manifest and finishes last: unserialised, it dropped full.
    _together(_SLOW_EXPORT, ("full", out, source, cache, 0.5), ("es", out, source, cache, 5))
    manifest = json.loads((out / MANIFEST).read_text())
    card = (out / "README.md").read_text().split("---")[1]
    in_card = sorted(c["config_name"] for c in yaml.safe_load(card)["configs"])
    assert sorted(manifest["configs"]) == in_card == ["es", "full"]
    assert read_export_manifest(out)["configs"] == manifest["configs"]  # shard list matches the folder
