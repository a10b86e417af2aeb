"""What every node of a Ray cluster must see before a study starts, checked from each node.

On more than one node, Ray keeps the experiment (trial folders, checkpoints, the searcher's
state) at its ``storage_path``, and a trial on any node, or one moved to another node by a
retry, writes and reads there: it must be a folder every node shares (NFS) or an object-store
URI. No rule on a path tells a shared folder from a local disk, so the driver writes a marker
there and a tiny task pinned to each node looks for it (Ray's own check does the same, but only
when a trial on another node first checkpoints, and then it fails that trial). The same kind of
task checks the dataset on each node, generating synthetic data where it is missing. A node
that fails is named (host name and IP) and the start refused before anything is recorded.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError, TaskUnschedulableError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from search.layout import Layout
from search.studyfiles.study import URL_RE, DatasetSpec, StudySpec
from trainables.errors import CephtuneError, ConfigError, DataError, first_line

NODE_TIMEOUT_S = 120  # a node that runs no task in this long is named as not answering
_LOCAL_STORES = ("sqlite:", "file:")  # MLflow stores that are files on the driver's disk


def alive_nodes() -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n.get("Alive")]


def describe(node: dict[str, Any]) -> str:
    return f"{node.get('NodeManagerHostname', '?')} ({node.get('NodeManagerAddress', '?')})"


def on_each_node(
    function: Callable, args: tuple, nodes: list[dict[str, Any]], timeout: float = NODE_TIMEOUT_S
) -> list[Any]:
    """``function(*args)`` on each node of ``nodes``, in order: one task pinned to it that
    holds no CPU (a busy node still answers). A ``CephtuneError`` it raises names the node;
    a node that died since it was listed gives None."""
    task = ray.remote(num_cpus=0, max_retries=0)(function)
    refs = []
    for node in nodes:
        pin = NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)
        refs.append(task.options(scheduling_strategy=pin).remote(*args))
    ready, late = ray.wait(refs, num_returns=len(refs), timeout=timeout)
    if late:
        silent = ", ".join(describe(n) for n, r in zip(nodes, refs, strict=True) if r in late)
        raise ConfigError(f"node {silent} of the Ray cluster did not finish a check in {timeout} s")
    results = []
    for node, ref in zip(nodes, refs, strict=True):
        try:
            results.append(ray.get(ref))
        except RayTaskError as e:
            cause = e.cause if isinstance(e.cause, CephtuneError) else None
            if cause is None:
                raise
            raise type(cause)(f"on node {describe(node)}: {cause}") from None
        except TaskUnschedulableError:  # the node died since ray.nodes() listed it: gone
            results.append(None)
        except RayError as e:  # the node cannot run a task: not the check's fault
            raise ConfigError(
                f"node {describe(node)} of the Ray cluster could not run a task "
                f"({first_line(e, with_type=True)})"
            ) from None
    return results


def check_tracking(uri: str, nodes: list[dict[str, Any]]) -> None:
    """On several nodes, the MLflow store must be a tracking server: a file store on the
    driver's disk leaves a study that ``resume`` on another machine cannot continue."""
    if len(nodes) < 2 or (URL_RE.match(uri) and not uri.startswith(_LOCAL_STORES)):
        return
    raise ConfigError(
        f"MLFLOW_TRACKING_URI: the MLflow store {uri} is a file on this machine, but the Ray "
        f"cluster has {len(nodes)} nodes and a study may be resumed from any of them; run "
        "`mlflow server --backend-store-uri postgresql://…` and set "
        "MLFLOW_TRACKING_URI=http://HOST:5000 on every machine that starts or resumes studies"
    )


def check_experiments(where: str, location: str, nodes: list[dict[str, Any]]) -> None:
    """On several nodes, the folder Ray keeps the experiment in must be one every node sees
    (a URI of an object store is taken as it is). ``where``: the setting, for the message."""
    if len(nodes) < 2 or (URL_RE.match(location) and not location.startswith("file://")):
        return
    folder = Path(location.removeprefix("file://"))
    made = next((p for p in [folder, *folder.parents][::-1] if not p.exists()), None)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f".cephtune-node-check-{uuid.uuid4().hex}"
    marker.write_text("")
    try:
        seen = on_each_node(os.path.exists, (str(marker),), nodes)
    finally:
        marker.unlink()
    blind = [describe(n) for n, ok in zip(nodes, seen, strict=True) if ok is False]
    if not blind:
        return
    if made is not None:  # a refused start leaves nothing behind, not even the folder
        shutil.rmtree(made)
    raise ConfigError(
        f"{where}: {folder} is not shared: node {', '.join(blind)} does not see it. On a "
        "cluster of several machines Ray keeps the experiment where every node reads and "
        "writes it: set experiment_path to a shared folder (NFS) or an object-store URI "
        "(s3://bucket/path)"
    )


def check_dataset(
    where: str, dataset: DatasetSpec, root: Path, nodes: list[dict[str, Any]]
) -> None:
    """Every node in ``nodes`` has the dataset at ``root`` (synthetic data is generated
    there where it is missing), checked as the driver checked its own copy."""
    from search.run.datasets import prepare_at

    try:
        on_each_node(prepare_at, (dataset, str(root)), nodes)
    except DataError as e:
        raise DataError(
            f"{where}: {e} (a dataset must be at the same path on every node)"
        ) from None


WEIGHTS_TIMEOUT_S = 1800  # a first download of hrnet_w48's ImageNet weights on a slow link


def _fetch_weights(configs: list[dict[str, Any]]) -> None:
    """On a node: the pretrained weights of ``configs``, into its timm cache (torch and timm
    are imported there, never in the driver)."""
    from trainables.models.weights import fetch

    fetch(configs)


def check_weights(where: str, configs: tuple[dict[str, Any], ...]) -> None:
    """Every node (this one too) has, or downloads now, the pretrained weights of each of
    ``configs`` (``space_file.pretrained_backbones``); ``where``: the space's file and key."""
    if not configs:
        return
    try:
        on_each_node(_fetch_weights, (list(configs),), alive_nodes(), WEIGHTS_TIMEOUT_S)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def other_nodes(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The nodes but the driver's own (its checks ran in the driver)."""
    here = ray.get_runtime_context().get_node_id()
    return [n for n in nodes if n["NodeID"] != here]


def check_cluster(spec: StudySpec, layout: Layout, data_root: Path, tracking_uri: str) -> None:
    """Everything a study needs from each node of the cluster it joined (nothing on one node)."""
    nodes = alive_nodes()
    if len(nodes) < 2:
        return
    check_tracking(tracking_uri, nodes)
    key = "experiment_path" if spec.experiment_path else "experiment_path (not set: studies/NAME)"
    location = layout.experiments(spec.name, spec.experiment_path)
    check_experiments(f"{spec.path}: {key}", location, nodes)
    key = "dataset" if spec.dataset.format == "synthetic" else "dataset.root"
    check_dataset(f"{spec.path}: {key}", spec.dataset, data_root, other_nodes(nodes))
