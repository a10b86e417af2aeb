"""`make gpu-check`: everything that needs a GPU, in one run of under 8 minutes, with figures.

1. the GPU tests (``pytest -m gpu``: devices follow resources in real Ray trials, the memory
   cap of a GPU share, a step without host syncs, AMP finite, checkpoints across devices,
   bf16/fp16 against the card, inference on the GPU);
2. ``benchmarks/gpu.py`` once (mixed precision vs fp32, 4 x 0.25 GPU vs 1 x 1 GPU);
3. ``benchmarks/memory_estimate.py --device cuda`` in its smoke mode: the training-memory
   estimate against ``torch.cuda.max_memory_allocated`` of two real steps;
4. ``benchmarks/loader_vs_step.py``: a trial's loader samples/s against its step's at 256, 512
   and 1024 px (HRNet-W32, batch 8, the trial's default workers);
5. a study of 8 trials, 4 at a time at 0.25 GPU each, through ``search.py start`` on synthetic
   data: its wall time, trial states, where and in which precision each trial ran, its
   steady-state samples/s and data wait, and the GPU memory each trial process held (from
   ``nvidia-smi``) against its share;
6. ``benchmarks/compile.py --smoke`` last, in what is left of the budget: torch.compile vs
   eager steps and the compile's one-off seconds (a cut compile still shows how long it took).

Without CUDA it prints ``SKIP reason`` and exits 0; with a GPU that ``nvidia-smi`` lists and
torch cannot use (an old driver for its CUDA, a card older than its kernels), ``FAILED`` with
the reason and the torch build that would, and exit code 1. Each part has a time cap within
the budget; the last line is ``RATIO ...`` (the benchmark's figures and the study's), or
``FAILED ...`` with exit code 1.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import finish, header, median, parser, skip

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 480
CAPS_S = {"tests": 130, "benchmark": 150, "memory": 40, "feed": 70, "study": 100, "compile": 60}

SPACE = """\
params:
  lr: {type: float, low: 5.0e-4, high: 4.0e-3, log: true}
  loss: {type: categorical, choices: [adaptive_wing, heatmap]}
fixed:
  model: hrnet
  backbone: hrnet_w18_small
  image_size: 256
  batch_size: 16
  warmup_epochs: 1
  checkpoint_every: 3
"""

STUDY = """\
name: gpucheck
dataset: {{format: synthetic, n: {n}, size: [386, 480], seed: 0}}
space: space.yaml
num_samples: 8
max_epochs: {epochs}
asha: {{grace_period: 1, reduction_factor: 2}}  # rungs after the 1-epoch warmup
resources: {{cpu: {cpu}, gpu: 0.25}}
max_concurrent_trials: 4
seed: 0
"""


def run_part(name: str, cmd: list[str], deadline: float, **kwargs) -> tuple[bool, str, float]:
    """Run ``cmd`` within its cap and the overall deadline; (ok, output, seconds). Its output
    is printed line by line as it comes (``  | …``), so a run cut short by the machine's limit
    still shows every figure measured so far. A part that runs over is killed with everything
    it started (a study's local Ray included)."""
    cap = min(CAPS_S[name], max(1.0, deadline - time.monotonic()))
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kwargs,
    )
    lines: list[str] = []

    def echo() -> None:
        for line in proc.stdout:
            lines.append(line)
            if "\x1b[" not in line:  # Ray's coloured logs stay in the output, not the terminal
                print(f"  | {line}", end="", flush=True)

    reader = threading.Thread(target=echo, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=cap)
        ok = proc.returncode == 0
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        ok = False
        lines.append(f"\n{name}: stopped after its {cap:.0f} s cap\n")
        print(lines[-1], end="", flush=True)
    reader.join(timeout=10)
    return ok, "".join(lines), time.monotonic() - start


class GpuMemory:
    """Polls ``nvidia-smi`` for the memory each compute process holds; the peak per process."""

    def __init__(self) -> None:
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> GpuMemory:
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _poll(self) -> None:
        query = ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader"]
        while not self._stop.wait(1.0):
            out = subprocess.run(query, capture_output=True, text=True).stdout
            for line in out.splitlines():
                pid, _, used = (part.strip() for part in line.partition(","))
                if pid == str(os.getpid()) or not used.split()[:1]:
                    continue  # this process (its CUDA context), or no figure
                try:
                    mib = float(used.split()[0])
                except ValueError:
                    continue  # "[N/A]" where the driver does not say
                self.peak[pid] = max(self.peak.get(pid, 0.0), mib)


def study(project: Path, smoke: bool, deadline: float) -> tuple[bool, list[str], dict]:
    """The 4 x 0.25-GPU study; printed lines and its figures."""
    import optuna
    import torch
    from mlflow.tracking import MlflowClient

    from trainables.precision import Precision

    auto = Precision.resolve("auto", torch.device("cuda")).name

    (project / "space.yaml").write_text(SPACE)
    cpu = max(1, (len(os.sched_getaffinity(0)) - 2) // 4)
    path = project / "gpucheck.yaml"
    path.write_text(STUDY.format(n=40 if smoke else 160, epochs=2 if smoke else 6, cpu=cpu))
    env = {**os.environ, "CEPHTUNE_CACHE_DIR": str(project / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    with GpuMemory() as memory:
        ok, out, seconds = run_part(
            "study",
            [sys.executable, str(REPO / "search.py"), "start", str(path), "--fresh"],
            deadline,
            cwd=project,
            env=env,
        )
    lines = [f"study: 8 trials, 4 at a time at 0.25 GPU, {cpu} CPUs each: {seconds:.0f} s"]
    if not ok:
        return False, [*lines, out[-3000:]], {}
    summary = [line for line in out.strip().splitlines() if "\x1b[" not in line]  # not Ray's logs
    lines += ["  " + line for line in summary[-7:]]
    storage = f"sqlite:///{project}/studies/optuna.db"
    trials = optuna.load_study(study_name="gpucheck", storage=storage).trials
    client = MlflowClient(f"sqlite:///{project}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("gpucheck")
    where, rates, waits, peaks = set(), [], [], []
    for run in client.search_runs([experiment.experiment_id]):
        if run.data.tags.get("cephtune.role") == "study":
            continue
        where.add((run.data.tags.get("cephtune.device"), run.data.tags.get("cephtune.precision")))
        for key, into in (("samples_per_s", rates), ("data_wait_frac", waits)):
            history = client.get_metric_history(run.info.run_id, key)
            steady = [m.value for m in history if m.step > 1] or [m.value for m in history]
            if steady:
                into.append(median(steady))
        held = [m.value for m in client.get_metric_history(run.info.run_id, "gpu_peak_gb")]
        if held:
            peaks.append(max(held))
    states = sorted({t.state.name for t in trials})
    lines.append(
        f"  states {', '.join(states)}; (device, precision): {sorted(map(str, where))}; auto={auto}"
    )
    if rates:
        rate, wait = median(rates), median(waits)
        lines.append(f"  per trial, steady state: {rate:.1f} samples/s, data wait {wait:.1%}")
    total_mib = torch.cuda.get_device_properties(0).total_memory / 2**20
    if peaks:  # from each trial's own allocator: there even where nvidia-smi lists no processes
        lines.append(
            f"  GPU memory per trial (its gpu_peak_gb): max {max(peaks):.2f} GiB, median "
            f"{median(peaks):.2f} GiB, of a 0.25 share of {0.25 * total_mib / 1024:.1f} GiB"
        )
    if memory.peak:
        peak = max(memory.peak.values())
        lines.append(
            f"  GPU memory per process (nvidia-smi): peak {peak:.0f} MiB of a 0.25 share of "
            f"{0.25 * total_mib:.0f} MiB; {len(memory.peak)} processes"
        )
    fine = where == {("cuda", auto)} and set(states) <= {"COMPLETE", "PRUNED"} and bool(rates)
    figures = {"study_s": seconds, "study_samples_per_s": median(rates) if rates else 0.0}
    return fine, lines, figures


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    args = p.parse_args()
    header("GPU check: the GPU tests, benchmarks/gpu.py, a 4 x 0.25-GPU study")
    import torch

    if not torch.cuda.is_available():
        from trainables.device import unusable_gpus

        reason = unusable_gpus()
        if reason:  # a GPU is there and torch cannot use it: that is a failure, not a skip
            print(f"FAILED {reason}", flush=True)
            return 1
        skip("CUDA is not available on this machine: make gpu-check needs a GPU")
        return 0
    deadline = time.monotonic() + BUDGET_S
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="cephtune-gpu-check-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, "PYTHONPATH": path}
        # The GPU tests' own module: collecting the whole suite would import what only the CPU
        # suite installs (Playwright, PostgreSQL drivers), which gpu-check's install leaves out.
        tests = [sys.executable, "-m", "pytest", "tests/trainables/test_gpu.py", "-m", "gpu"]
        tests += ["-q", "-rs", "-p", "no:cacheprovider"]
        print("== GPU tests", flush=True)
        ok, out, seconds = run_part("tests", tests, deadline, cwd=REPO, env=env)
        print(f"== GPU tests: {seconds:.0f} s", flush=True)
        if not ok:
            failed.append("tests")

        def part(name: str, script: str, options: list[str], title: str) -> dict[str, str]:
            """A benchmark as a part: its RATIO figures, or nothing and the part failed."""
            cmd = [sys.executable, str(REPO / "benchmarks" / script), *options]
            print(f"== {title}", flush=True)
            ok, out, seconds = run_part(name, cmd + ["--workdir", str(work / name)], deadline,
                                        cwd=work, env=env)  # fmt: skip
            print(f"== {title}: {seconds:.0f} s", flush=True)
            last = out.strip().splitlines()[-1] if out.strip() else ""
            if ok and last.startswith("RATIO"):
                return dict(figure.split("=", 1) for figure in last.split()[1:])
            failed.append(name)
            return {}

        smoke = ["--smoke"] if args.smoke else []
        figures = part("benchmark", "gpu.py", ["--repeats", "1", *smoke], "benchmarks/gpu.py")
        memory = part("memory", "memory_estimate.py", ["--smoke", "--device", "cuda"],
                      "the memory estimate vs the peak on the GPU")  # fmt: skip
        figures.update({f"memory_{k}": v for k, v in memory.items() if k == "worst_error"})
        figures.update(part("feed", "loader_vs_step.py", ["--device", "cuda", *smoke],
                            "a trial's loader vs its step at 256 / 512 / 1024 px"))  # fmt: skip

        project = work / "study"
        project.mkdir(exist_ok=True)
        ok, lines, found = study(project, args.smoke, deadline)
        print("== " + "\n".join(lines), flush=True)
        if not ok:
            failed.append("study")
        figures.update(part("compile", "compile.py", ["--smoke"], "torch.compile vs eager"))
    total = BUDGET_S - (deadline - time.monotonic())
    print(f"== total {total:.0f} s (budget {BUDGET_S} s)")
    if failed:
        print(f"FAILED {' '.join(failed)}", flush=True)
        return 1
    finish(**{k: float(v) for k, v in figures.items()}, **found, total_s=total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
