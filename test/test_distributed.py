"""tf.distribute: a two-process multi_worker run on localhost (CPU) takes as many
optimizer steps as a single-process run and ends with the same table."""
import json
import os
import socket
import subprocess
import sys

import pytest

from test_training import ROOT, TINY_MODEL, write_records


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_worker_run_matches_single_process_step_count(tmp_path):
    dset = write_records(str(tmp_path / "records"))
    base = [sys.executable, os.path.join(ROOT, "scripts", "train.py")] + TINY_MODEL + [
        "--dset_dir", dset, "--n_epochs", "2", "--no_export"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}

    single = subprocess.run(base + ["--logdir", str(tmp_path / "single")], env=env,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stdout[-2000:] + single.stderr[-2000:]

    ports = [free_port(), free_port()]
    cluster = {"worker": ["127.0.0.1:{}".format(p) for p in ports]}
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(
            base + ["--distribute", "multi_worker", "--logdir", str(tmp_path / "worker{}".format(index))],
            env={**env, "TF_CONFIG": tf_config}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True))
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=300)[0])
    finally:
        for p in procs:
            p.kill()
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]

    one = json.load(open(tmp_path / "single" / "results.json"))
    chief = json.load(open(tmp_path / "worker0" / "results.json"))
    assert chief["steps"] == one["steps"] > 0
    assert "|model|train|val|test|train time|" in outputs[0]
    # only the chief keeps checkpoints and results
    assert os.path.exists(tmp_path / "worker0" / "final" / "ckpt.index")
    assert not os.path.exists(tmp_path / "worker1" / "results.json")
    assert 0.0 <= chief["test"] <= 1.0
