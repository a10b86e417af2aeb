"""The Ray a study runs on: a local one, or a cluster joined at an address; and whether its
nodes can hold a trial's resources at all (Ray would otherwise wait for them forever)."""

from __future__ import annotations

import os
import socket

import ray

from search.process import prepare_driver
from search.studyfiles.study import StudySpec
from trainables.errors import ConfigError, first_line
from trainables.gpu_env import check_gpu_isolation


def ensure_ray(address: str | None = None) -> None:
    """Start a local Ray, or join the cluster at ``address`` (auto, HOST:PORT, ray://…)."""
    prepare_driver()  # the environment a local Ray's workers inherit
    if ray.is_initialized():
        return
    if address is not None:
        _check_reachable(address)
    try:
        ray.init(address=address, include_dashboard=False, logging_level="WARNING")
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        if address is None:
            raise
        raise ConfigError(
            f"cannot connect to the Ray cluster at {address}: {first_line(e)}"
        ) from None


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes, when nothing listens at a HOST:PORT cluster address."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if address == "auto" or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise ConfigError(
            f"cannot connect to the Ray cluster at {address}: {e.strerror or e}"
        ) from None


def check_resources(spec: StudySpec, cpu_only: bool) -> float:
    """The GPU share per trial to request. A trial runs on one node, so some node must hold a
    trial's CPUs and GPUs, or Ray would wait for it forever: refuse before anything is recorded,
    unless the study says the cluster autoscales. A GPU study on a GPU-less cluster fails too."""
    wanted = spec.resources
    gpu = 0.0 if cpu_only else wanted.gpu
    if gpu:
        check_gpu_isolation(os.environ, spec.path)
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    total_gpu = sum(n.get("GPU", 0) for n in nodes)
    if gpu and not total_gpu and not wanted.autoscaling:
        raise ConfigError(
            f"{spec.path}: resources.gpu asks for {gpu:g} GPU per trial but the cluster "
            "has 0; pass --cpu to run it on CPU"
        )
    if wanted.autoscaling:
        return gpu
    for key, unit, asked in (("cpu", "CPU", wanted.cpu), ("gpu", "GPU", gpu)):
        largest = max((n.get(unit, 0) for n in nodes), default=0)
        if asked > largest:
            total = sum(n.get(unit, 0) for n in nodes)
            raise ConfigError(
                f"{spec.path}: resources.{key} asks for {asked:g} {unit} per trial but no node "
                f"of the cluster has that many (largest node {largest:g}, {len(nodes)} "
                f"node{'s' if len(nodes) != 1 else ''}, {total:g} in all); lower it, or set "
                "`autoscaling: true` if the cluster adds nodes on demand"
            )
    return gpu


def unfinished_in_ray(location: str) -> frozenset[str]:
    """The Ray trial ids ``Tuner.restore`` continues: unfinished in the saved experiment."""
    from ray.tune import ExperimentAnalysis

    trials = ExperimentAnalysis(location).trials
    return frozenset(t.trial_id for t in trials if t.status not in ("TERMINATED", "ERROR"))
