"""Checks of a SLURM submission made before anything is submitted (``jumpdenoise submit [--dry-run]``).

Everything that would otherwise only fail inside a running job: the profile's resources
against what the cluster's partitions offer (``sinfo``), the training job's tasks and nodes
against ``train.trainer``, GPU devices asked of jobs without GPUs, sbatch options in
``extra`` and their time/memory formats, and the shell syntax of the ``setup`` lines. Each
problem is one line naming the dotted configuration field.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jumpdenoise.executors.slurm_cluster import Partition, parse_time_min

if TYPE_CHECKING:
    from jumpdenoise.config import JumpDenoiseConfig, SlurmProfile
    from jumpdenoise.stages.base import Stage

#: sbatch options the profile sets from its own fields (``extra`` would silently override them).
OWN_OPTIONS = {"time": "time_min", "mem": "mem_gb", "partition": "partition", "account": "account",
               "qos": "qos", "constraint": "constraint", "nodes": "nodes", "cpus-per-task": "cpus_per_task",
               "gpus-per-node": "gpus_per_node", "ntasks-per-node": "tasks_per_node", "job-name": None,
               "output": None, "error": None, "array": None, "signal": "signal_delay_s", "dependency": None}
TIME_OPTIONS = {"time-min"}
SIZE_OPTIONS = {"mem-per-cpu", "mem-per-gpu", "tmp"}
SIZE = re.compile(r"\d+[KMGT]?B?", re.IGNORECASE)


@dataclass(frozen=True)
class JobShape:
    """The resources one kind of job of a stage asks for."""

    stage: str  # the profile's stage key: a stage name or "control"
    nodes: int
    tasks: int
    gpus: bool


class ProfileFields:
    """Dotted names of a profile's fields as the user wrote them (base or ``stages.<name>``)."""

    def __init__(self, profile: SlurmProfile) -> None:
        self.profile = profile

    def __call__(self, stage: str, key: str) -> str:
        over = self.profile.stages.get(stage)
        if over is not None and getattr(over, key, None) is not None:
            return f"executor.profile.stages.{stage}.{key}"
        return f"executor.profile.{key}"


def job_shapes(config: JumpDenoiseConfig, stages: list[Stage]) -> list[JobShape]:
    """The jobs a submission of ``stages`` makes: control jobs, array tasks, the training job."""
    from jumpdenoise.executors.slurm import tasks_per_node

    profile = _profile(config)
    shapes = {JobShape("control", 1, 1, False)}
    for stage in stages:
        prof = profile.for_stage(stage.name)
        if stage.kind == "distributed":
            shapes.add(JobShape(stage.name, prof.nodes, tasks_per_node(prof), True))
        elif stage.kind == "array":
            shapes.add(JobShape(stage.name, 1, 1, stage.gpus))
    return sorted(shapes, key=lambda s: (s.stage != "control", s.stage))


def _profile(config: JumpDenoiseConfig) -> SlurmProfile:
    from jumpdenoise.config import load_profile

    return load_profile(config.executor.profile)


def _partition(prof: SlurmProfile, cluster: dict[str, Partition]) -> Partition | None:
    if prof.partition:
        return cluster.get(prof.partition)
    return next((p for p in cluster.values() if p.default), None)


def resource_problems(profile: SlurmProfile, shapes: list[JobShape], cluster: dict[str, Partition]) -> list[str]:
    """Profile values the cluster's partitions cannot satisfy (one line each)."""
    field = ProfileFields(profile)
    problems: list[str] = []
    for shape in shapes:
        prof = profile.for_stage(shape.stage)
        if prof.partition and prof.partition not in cluster:
            problems.append(f"{field(shape.stage, 'partition')}: no partition {prof.partition!r} on this cluster "
                            f"(partitions: {', '.join(sorted(cluster)) or 'none'})")
            continue
        part = _partition(prof, cluster)
        if part is None:
            problems.append(f"{field(shape.stage, 'partition')}: not set and the cluster has no default partition "
                            f"(partitions: {', '.join(sorted(cluster)) or 'none'})")
            continue
        where = f"partition {part.name!r}"
        if shape.nodes > len(part.nodes):
            problems.append(f"{field(shape.stage, 'nodes')}: {shape.nodes} node(s) but {where} has "
                            f"{len(part.nodes)}")
        if prof.cpus_per_task * shape.tasks > part.cpus:
            what = f"{prof.cpus_per_task} CPU(s) per task x {shape.tasks} task(s)" if shape.tasks > 1 else \
                f"{prof.cpus_per_task} CPU(s)"
            problems.append(f"{field(shape.stage, 'cpus_per_task')}: {what} per node but the nodes of {where} "
                            f"have at most {part.cpus}")
        if part.mem_mb and prof.mem_gb * 1024 > part.mem_mb:
            problems.append(f"{field(shape.stage, 'mem_gb')}: {prof.mem_gb:g} GB per node but the nodes of {where} "
                            f"have at most {part.mem_mb / 1024:.1f} GB")
        if shape.gpus and prof.gpus_per_node > part.gpus:
            problems.append(f"{field(shape.stage, 'gpus_per_node')}: {prof.gpus_per_node} GPU(s) per node but the "
                            f"nodes of {where} have {part.gpus}")
        if part.time_limit_min is not None and prof.time_min > part.time_limit_min:
            problems.append(f"{field(shape.stage, 'time_min')}: {prof.time_min} min but {where} allows at most "
                            f"{part.time_limit_min} min")
        if prof.constraint:
            unknown = sorted({f for f in re.split(r"[&|,\[\]()]", re.sub(r"\*\d+", "", prof.constraint))
                              if f.strip()} - part.features)
            if unknown:
                problems.append(f"{field(shape.stage, 'constraint')}: feature(s) {', '.join(unknown)} on no node of "
                                f"{where} (features: {', '.join(sorted(part.features)) or 'none'})")
    return problems


def option_problems(profile: SlurmProfile, known_options: set[str]) -> list[str]:
    """``extra`` options sbatch does not know, that override a profile field, or whose value is malformed;
    ``setup`` lines bash cannot parse or that source a file this machine does not have (the
    jobs see the same file systems)."""
    problems: list[str] = []
    extras = [("executor.profile.extra", profile.extra)] + [
        (f"executor.profile.stages.{name}.extra", over.extra) for name, over in profile.stages.items() if over.extra]
    for prefix, extra in extras:
        for key, value in extra.items():
            option = str(key).replace("_", "-")
            name = f"{prefix}.{key}"
            if option in OWN_OPTIONS:
                own = OWN_OPTIONS[option]
                problems.append(f"{name}: set by jumpdenoise itself" + (f"; use the profile's {own}" if own else ""))
            elif known_options and option not in known_options:
                problems.append(f"{name}: not an sbatch option (sbatch --help)")
            elif option in TIME_OPTIONS:
                try:
                    parse_time_min(str(value))
                except ValueError:
                    problems.append(f"{name}: {value!r} is not a SLURM time (MM, HH:MM:SS, D-HH:MM)")
            elif option in SIZE_OPTIONS and not SIZE.fullmatch(str(value)):
                problems.append(f"{name}: {value!r} is not a size (e.g. 4G, 500M)")
    setups = [("executor.profile.setup", profile.setup)] + [
        (f"executor.profile.stages.{name}.setup", over.setup) for name, over in profile.stages.items() if over.setup]
    for name, lines in setups:
        res = subprocess.run(["bash", "-n"], input="\n".join(lines) + "\n", capture_output=True, text=True,
                             timeout=30)
        if res.returncode != 0:
            message = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "syntax error"
            problems.append(f"{name}: bash cannot parse it ({message.replace('bash: ', '')})")
        for i, line in enumerate(lines):
            m = re.match(r"\s*(?:source|\.)\s+(\S+)\s*$", line)
            if m and "$" not in m.group(1) and not Path(m.group(1)).expanduser().is_file():
                problems.append(f"{name}[{i}]: {m.group(1)} does not exist (sourced by the jobs)")
    return problems


def array_problems(profile: SlurmProfile, cluster_max: int | None) -> list[str]:
    """``max_array_size`` beyond the cluster's ``MaxArraySize - 1`` (the prepare job's sbatch would fail)."""
    if cluster_max is None or profile.max_array_size <= cluster_max - 1:
        return []
    return [f"executor.profile.max_array_size: {profile.max_array_size} but the cluster's MaxArraySize is "
            f"{cluster_max} (at most {cluster_max - 1})"]


def trainer_problems(config: JumpDenoiseConfig, profile: SlurmProfile, stages: list[Stage]) -> list[str]:
    """``train.trainer`` and ``predict.device`` against the jobs the profile makes (what the training
    job's own check, :func:`jumpdenoise.train.loop.check_cluster`, would refuse once started)."""
    from jumpdenoise.executors.slurm import tasks_per_node

    field = ProfileFields(profile)
    names = {s.name for s in stages}
    problems: list[str] = []
    if "train" in names:
        prof = profile.for_stage("train")
        ts = config.train.trainer
        tasks = tasks_per_node(prof)
        if ts.num_nodes != prof.nodes:
            problems.append(f"train.trainer.num_nodes: {ts.num_nodes} but the training job gets {prof.nodes} "
                            f"node(s) ({field('train', 'nodes')})")
        if ts.devices != "auto" and ts.devices != tasks:
            source = field("train", "tasks_per_node") if prof.tasks_per_node else field("train", "gpus_per_node")
            problems.append(f"train.trainer.devices: {ts.devices} but the training job runs {tasks} task(s) per "
                            f"node, one per device ({source})")
        accelerator = str(ts.accelerator).lower()
        if accelerator in {"gpu", "cuda"} and prof.gpus_per_node == 0:
            problems.append(f"train.trainer.accelerator: {ts.accelerator!r} but the training job gets no GPU "
                            f"({field('train', 'gpus_per_node')} is 0)")
        if prof.gpus_per_node and accelerator != "cpu" and tasks > prof.gpus_per_node:
            problems.append(f"{field('train', 'tasks_per_node')}: {tasks} task(s) per node share "
                            f"{prof.gpus_per_node} GPU(s); one task per GPU")
    if "predict" in names and str(config.predict.device).startswith("cuda") \
            and profile.for_stage("predict").gpus_per_node == 0:
        problems.append(f"predict.device: {config.predict.device!r} but the predict jobs get no GPU "
                        f"({field('predict', 'gpus_per_node')} is 0)")
    return problems


def submission_problems(config: JumpDenoiseConfig, stages: list[Stage], *,
                        cluster: dict[str, Partition] | None = None,
                        known_options: set[str] | None = None, cluster_max_array: int | None = None) -> list[str]:
    """Every problem of submitting ``stages`` of ``config`` that would otherwise show inside a job.

    Parameters
    ----------
    config
        The pipeline configuration (its ``executor.profile`` is the SLURM profile).
    stages
        The stages to submit (those already done left out).
    cluster, known_options, cluster_max_array
        The cluster's partitions, sbatch's options and ``MaxArraySize`` (default: asked of
        ``sinfo``, ``sbatch --help`` and ``scontrol show config`` when ``cluster`` is not
        given); an empty ``cluster`` leaves the resources unchecked.

    Returns
    -------
    list of str
        One line per problem, each starting with the dotted field at fault; empty when none.

    Raises
    ------
    ClusterError
        When ``sinfo`` is missing or fails (and ``cluster`` is not given).
    """
    from jumpdenoise.executors.slurm_cluster import cluster_partitions, max_array_size, sbatch_options

    profile = _profile(config)
    if cluster is None:
        cluster = cluster_partitions()
        cluster_max_array = max_array_size()
    if known_options is None:
        known_options = sbatch_options()
    shapes = job_shapes(config, stages)
    problems = (resource_problems(profile, shapes, cluster) if cluster else []) \
        + array_problems(profile, cluster_max_array) + option_problems(profile, known_options) \
        + trainer_problems(config, profile, stages)
    return list(dict.fromkeys(problems))  # one line per problem, also when several jobs share a field
