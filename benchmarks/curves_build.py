"""Rebuild a learning-curve table (``benchmarks/tables/curves-TASK.json``): train every
configuration of the task's grid once and keep the valid and test MRE of every epoch.

    python benchmarks/curves_build.py                      # the tabular benchmark's table
    python benchmarks/curves_build.py --task small --limit 24

Configurations run in a seeded random order, ``--workers`` at a time (one torch thread each),
and each finished one is appended to ``TABLE.partial.jsonl`` at once, so a stopped build goes on
where it stopped and any prefix of it is a random sample of the grid. The trainable is the
product's (``trainables.run.build`` and ``train_epoch``, on CPU); only the extra evaluation of
the test split after each epoch is the builder's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from curves import GRIDS, QUICKSTART_FIXED, TASKS, config_key, grid_configs, table_path

ORDER_SEED = 2026


def train_one(task_name: str, params: dict, data_dir: str, cache_dir: str) -> dict:
    """Train one configuration of the task; its valid and test MRE after every epoch."""
    import numpy as np
    import torch

    from trainables.config import TrainConfig
    from trainables.eval.inference import errors_mm
    from trainables.run import build, dataset_for
    from trainables.train import NonFiniteLoss, train_epoch

    torch.set_num_threads(1)
    task = TASKS[task_name]
    fixed = {**task.fixed(), **(QUICKSTART_FIXED if task_name == "quickstart" else {})}
    cfg = TrainConfig.from_dict(
        {
            **fixed,
            **params,
            "data_dir": data_dir,
            "cache_dir": cache_dir,
            "epochs": task.max_epochs,
            "seed": task.train_seed,
            "num_threads": 1,
        }
    )
    run = build(cfg, "cpu")
    test = dataset_for(cfg, "test", augment=False)
    valid_curve, test_curve = [], []
    start = time.perf_counter()
    try:
        while run.epoch < cfg.epochs:
            run.epoch += 1
            train_epoch(run)
            for data, curve in ((run.valid, valid_curve), (test, test_curve)):
                errors = errors_mm(run.model, data, run.precision, cfg.batch_size)
                curve.append(round(float(np.nanmean(errors)), 4))
    except NonFiniteLoss:  # diverged: the rest of the schedule is lost, as a trial's would be
        pass
    return {
        "params": params,
        "valid": valid_curve,
        "test": test_curve,
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="bench", choices=sorted(TASKS))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--limit", type=int, help="only the first K configurations of the order")
    p.add_argument("--out", type=Path, help="default benchmarks/tables/curves-TASK.json")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/cephtune-curves"))
    args = p.parse_args()
    task = TASKS[args.task]
    out = args.out or table_path(args.task)
    partial = out.with_suffix(".partial.jsonl")
    configs = grid_configs(args.task)
    random.Random(ORDER_SEED).shuffle(configs)
    configs = configs[: args.limit] if args.limit else configs
    done = {}
    if partial.exists():
        for line in partial.read_text().splitlines():
            row = json.loads(line)
            done[config_key(row["params"])] = row
    todo = [c for c in configs if config_key(c) not in done]
    print(f"task {task}: {len(configs)} configurations, {len(done)} done, {len(todo)} to train")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import synthetic

    args.workdir.mkdir(parents=True, exist_ok=True)
    data_dir = synthetic(args.workdir, task.n, task.width, task.height, task.data_seed)
    cache_dir = args.workdir / "cache"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    pool = ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"))
    with pool, open(partial, "a") as sink:
        futures = [
            pool.submit(train_one, args.task, c, str(data_dir), str(cache_dir)) for c in todo
        ]
        for i, future in enumerate(as_completed(futures), 1):
            row = future.result()
            sink.write(json.dumps(row) + "\n")
            sink.flush()
            done[config_key(row["params"])] = row
            print(
                f"[{i}/{len(todo)}] {row['params']} valid {row['valid'][-1:]} {row['seconds']} s",
                flush=True,
            )
    rows = [done[config_key(c)] for c in grid_configs(args.task) if config_key(c) in done]
    table = {
        "task": task.__dict__,
        "grid": GRIDS[args.task],
        "fixed": {**task.fixed(), **(QUICKSTART_FIXED if args.task == "quickstart" else {})},
        "command": f"python benchmarks/curves_build.py --task {args.task}"
        + (f" --limit {args.limit}" if args.limit else ""),
        "rows": rows,
    }
    out.write_text(json.dumps(table, separators=(",", ":")) + "\n")
    print(f"wrote {len(rows)} rows to {out}")


if __name__ == "__main__":
    main()
