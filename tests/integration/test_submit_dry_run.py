"""``jumpdenoise submit --dry-run`` checks, against the real SLURM test cluster, every value that
would otherwise only fail inside a running job; each problem is one line naming its field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jumpdenoise.config import load_config
from jumpdenoise.errors import ConfigError
from jumpdenoise.executors.slurm_cluster import cluster_partitions, parse_sinfo, parse_time_min
from jumpdenoise.io.synthetic import generate_plate
from jumpdenoise.pipeline_slurm import submit_pipeline

pytestmark = pytest.mark.slurm

CLI = [sys.executable, "-c", "from jumpdenoise.cli import main; main()"]
BAD_PROFILE = {
    "time_min": 10, "mem_gb": 1, "cpus_per_task": 1,
    "extra": {"mail_typo": "END", "time_min": "1:2:3:4", "mem": "4G", "mem_per_cpu": "lots"},
    "max_array_size": 10**6, "setup": ["source /no/such/venv/bin/activate", "if true; then echo unfinished"],
    "stages": {"train": {"partition": "no-such-partition", "nodes": 2, "gpus_per_node": 2},
               "predict": {"mem_gb": 4096, "cpus_per_task": 64}},
}


def write_config(tmp_path: Path, profile: dict, trainer: dict, device: str = "cpu") -> Path:
    source = generate_plate(tmp_path / "source", plate_name="DRY", rows=1, columns=1, fields=1,
                            channels=("DNA",), size=(32, 32), seed=1, ground_truth=False, workers=1)
    (tmp_path / "profile.yaml").write_text(yaml.safe_dump(profile))
    config = {"source": {"path": str(source)}, "paths": {"workdir": str(tmp_path / "run")},
              "executor": {"kind": "slurm", "profile": str(tmp_path / "profile.yaml")},
              "train": {"trainer": trainer}, "predict": {"device": device}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def jd(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=300)


def test_dry_run_names_every_bad_field_and_exits_2(slurm_cluster, tmp_path: Path) -> None:
    profile = {"partition": slurm_cluster.partition, **BAD_PROFILE}
    config = write_config(tmp_path, profile, {"accelerator": "gpu", "devices": 1, "num_nodes": 1}, device="cuda")
    run = jd("submit", config, "--dry-run")
    assert run.returncode == 2, run.stdout + run.stderr
    assert "- train (jumpdenoise.stages.train)" in run.stdout  # the plan first, showing where the problems are
    lines = run.stderr.strip().splitlines()
    assert all(line.startswith("error: ") for line in lines), run.stderr
    fields = [line.removeprefix("error: ").split(":", 1)[0] for line in lines]
    assert sorted(fields) == sorted([
        "executor.profile.stages.train.partition",
        "executor.profile.stages.predict.cpus_per_task",
        "executor.profile.stages.predict.mem_gb",
        "executor.profile.extra.mail_typo",
        "executor.profile.extra.time_min",
        "executor.profile.extra.mem",
        "executor.profile.extra.mem_per_cpu",
        "executor.profile.setup",
        "executor.profile.setup[0]",
        "executor.profile.max_array_size",
        "train.trainer.num_nodes",
        "train.trainer.devices",
        "predict.device",
    ]), run.stderr
    text = run.stderr
    assert f"no partition 'no-such-partition' on this cluster (partitions: {slurm_cluster.partition})" in text
    assert f"64 CPU(s) per node but the nodes of partition '{slurm_cluster.partition}' have at most " \
           f"{slurm_cluster.cpus}" in text
    assert "4096 GB per node" in text and "'1:2:3:4' is not a SLURM time" in text
    assert "use the profile's mem_gb" in text and "not an sbatch option" in text
    assert "executor.profile.setup[0]: /no/such/venv/bin/activate does not exist (sourced by the jobs)" in text
    assert "executor.profile.max_array_size: 1000000 but the cluster's MaxArraySize is" in text
    assert "train.trainer.devices: 1 but the training job runs 2 task(s) per node" in text
    assert "predict.device: 'cuda' but the predict jobs get no GPU (executor.profile.gpus_per_node is 0)" in text
    assert "nothing submitted" not in run.stdout
    assert not (tmp_path / "run").exists()


def test_gpus_and_time_beyond_the_partition(slurm_cluster, tmp_path: Path) -> None:
    profile = {"partition": slurm_cluster.partition, "mem_gb": 1, "cpus_per_task": 1, "time_min": 10,
               "constraint": "no_such_feature", "stages": {"train": {"gpus_per_node": 1}}}
    config = write_config(tmp_path, profile, {"accelerator": "gpu", "devices": 1})
    run = jd("submit", config, "--dry-run")
    assert run.returncode == 2
    assert "error: executor.profile.stages.train.gpus_per_node: 1 GPU(s) per node but the nodes of partition " \
           f"'{slurm_cluster.partition}' have 0" in run.stderr
    assert "error: executor.profile.constraint: feature(s) no_such_feature on no node" in run.stderr


def test_a_good_profile_passes_and_the_real_submit_checks_first(slurm_cluster, tmp_path: Path) -> None:
    good = yaml.safe_load(slurm_cluster.profile.read_text())
    config = write_config(tmp_path, good, {"accelerator": "cpu", "devices": 1})
    run = jd("submit", config, "--dry-run")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "dry run: nothing submitted" in run.stdout

    bad = {**good, "stages": {**good.get("stages", {}), "stats": {"mem_gb": 100000}}}
    (tmp_path / "profile.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match=r"^executor\.profile\.stages\.stats\.mem_gb: 100000 GB per node"):
        submit_pipeline(load_config(config), echo=lambda s: None)
    assert not (tmp_path / "run" / "pipeline_state.json").exists()  # refused before any sbatch


def test_sinfo_of_the_test_cluster_is_read(slurm_cluster) -> None:
    parts = cluster_partitions()
    part = parts[slurm_cluster.partition]
    assert part.nodes == {slurm_cluster.node} and part.cpus == slurm_cluster.cpus and part.mem_mb > 0


def test_sinfo_lines_and_slurm_times_are_parsed() -> None:
    parts = parse_sinfo("gpu*|2-00:00:00|64|512000|gpu:a100:4(S:0-1)|a100,ib|g1\n"
                        "gpu*|2-00:00:00|64|256000|gpu:a100:4(S:0-1)|a100|g2\ncpu|infinite|128|1000000|(null)|(null)|c1\n")
    assert parts["gpu"].default and parts["gpu"].nodes == {"g1", "g2"} and parts["gpu"].gpus == 4
    assert parts["gpu"].mem_mb == 512000 and parts["gpu"].features == {"a100", "ib"}
    assert parts["gpu"].time_limit_min == 2880 and parts["cpu"].time_limit_min is None and parts["cpu"].gpus == 0
    assert [parse_time_min(t) for t in ("30", "30:00", "1:30:00", "1-02", "1-02:03", "1-02:03:04")] == \
        [30, 30, 90, 1560, 1563, 1564]
    with pytest.raises(ValueError):
        parse_time_min("1:2:3:4")
