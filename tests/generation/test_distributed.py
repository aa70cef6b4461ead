"""`fulora generate` under `accelerate launch`: two CPU processes split the work and give the one-process set."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from conftest import REPO_ROOT
from generate_fixtures import pixel_digests, reference_args

from fulora_data.generated import read_manifest

REPO = REPO_ROOT


def test_two_processes_split_the_work_and_equal_one(tiny_world, reference_run, tmp_path):
    out = tmp_path / "two"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    env["OMP_NUM_THREADS"] = "1"
    with socket.socket() as probe:  # a free port for the processes' rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # accelerate's own --cpu launches one process (several need MPI); --multi_gpu starts torchrun's
    # processes and fulora's --cpu makes them sample on the CPU over gloo.
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
        str(REPO / "scripts" / "generate.py"), *reference_args(tiny_world, out),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "on 2 processes" in done.stderr
    # Batches alternate between the processes: sizes 2,1,2,1,... give rank 0 eight images, rank 1 four.
    assert "process 0 of 2 made 8 images" in done.stderr and "process 1 of 2 made 4 images" in done.stderr
    assert pixel_digests(out) == reference_run["digests"]
    assert [s["sha256"] for s in read_manifest(out)["shards"]] == [
        s["sha256"] for s in read_manifest(reference_run["out"])["shards"]
    ]
    assert not (out / ".parts").exists()
