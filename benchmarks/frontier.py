"""Frontier axes on CPU-sized synthetic data, one run: heatmap stride 2 vs 4, test-time
augmentation, a 3-model ensemble, progressive resolution, and the decoding floor.

Every model is hrnet_w18_small trained with the same budget (epochs, batch, lr) on the same
synthetic cephalograms (386 x 480 px, 0.1 mm per pixel); test MRE is measured once per model on
the test split in original pixels x mm. Figures (ratios < 1 mean the technique helped):

- ``stride2_vs_stride4``: test MRE at heatmap stride 2 / at stride 4 (same input size);
- ``tta_vs_plain``: the stride-4 model's test MRE with TTA / without;
- ``ensemble_vs_best_single``: test MRE of the mean of three stride-4 models (seeds 0, 1, 2) /
  the best of the three alone;
- ``progressive_time_to_match``: wall time for a progressive run (half the size for the first
  half of the epochs) to reach the fixed-size run's best valid MRE, / the fixed run's time. If
  it never does (it may train up to twice as many epochs), the figure is a lower bound and a
  line says so;
- the decoding floor: MRE of decoding perfect Gaussian targets, per input size and stride (what
  the heatmap resolution alone costs, whatever the network).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import finish, header, parser, synthetic

from trainables.config import TrainConfig
from trainables.eval import heatmap
from trainables.eval.ensemble import Ensemble
from trainables.eval.inference import errors_mm
from trainables.eval.metrics import radial_errors
from trainables.eval.tta import TTA
from trainables.precision import Precision
from trainables.run import dataset_for
from trainables.shape import Size, sigma_for
from trainables.train import run_training

FULL = {"n": 60, "size": 128, "batch": 8, "epochs": 8, "floor": (128, 256, 512, 1024)}
SMOKE = {"n": 12, "size": 64, "batch": 4, "epochs": 1, "floor": (64, 128)}


def train(base: dict, **overrides) -> tuple[torch.nn.Module, list[tuple[float, float]]]:
    """Train a config; returns the model and (elapsed seconds, valid MRE) after every epoch."""
    cfg = TrainConfig.from_dict({**base, **overrides})
    curve: list[tuple[float, float]] = []
    start = time.perf_counter()
    run = run_training(
        cfg, lambda m, _: curve.append((time.perf_counter() - start, m["mre_mm"])), device="cpu"
    )
    return run.model.eval(), curve


def test_mre(model: torch.nn.Module, base: dict, tta: TTA | None = None) -> float:
    cfg = TrainConfig.from_dict(base)
    test = dataset_for(cfg, "test", augment=False)
    precision = Precision.resolve("fp32", "cpu")
    if tta is None and not isinstance(model, Ensemble):
        return float(np.nanmean(errors_mm(model, test, precision, cfg.batch_size)))
    from trainables.eval.inference import predict_dataset

    preds = predict_dataset(model, test, precision, cfg.batch_size, tta)
    truth = np.stack([r.landmarks for r in test.records])
    sizes = np.array([r.pixel_size for r in test.records])
    return float(np.nanmean(radial_errors(preds, truth, sizes)))


def decoding_floor(base: dict, size: int, stride: int, argmax: bool = False) -> float:
    """MRE (mm) of decoding perfect targets of the test split at ``size`` and ``stride``, with
    the trainable's sub-pixel decoding (or a plain argmax, for comparison)."""
    cfg = TrainConfig.from_dict({**base, "image_size": size})
    test = dataset_for(cfg, "test", augment=False)
    width, height = Size(size, size).heatmap(stride)
    sigma = sigma_for(None, size, stride)
    preds = []
    for i in range(len(test)):
        coords = torch.from_numpy(test.coords[i : i + 1]).float()
        target = heatmap.encode(heatmap.to_heatmap(coords, stride), height, width, sigma)
        if argmax:
            flat = target.flatten(2).argmax(-1)
            peak = torch.stack([flat % width, flat // width], dim=-1).float()
        else:
            peak = heatmap.decode(target)
        xy = heatmap.from_heatmap(peak, stride)[0].numpy()
        preds.append(test.to_original(i, xy))
    truth = np.stack([r.landmarks for r in test.records])
    sizes = np.array([r.pixel_size for r in test.records])
    return float(np.nanmean(radial_errors(np.stack(preds), truth, sizes)))


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    mode = SMOKE if args.smoke else FULL
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory(prefix="cephtune-bench-") as tmp:
        work = args.workdir or Path(tmp)
        root = synthetic(work, mode["n"], 386, 480)
        size, epochs = mode["size"], mode["epochs"]
        base = {
            "data_dir": str(root),
            "cache_dir": str(work / "cache"),
            "model": "hrnet",
            "backbone": "hrnet_w18_small",
            "image_size": size,
            "batch_size": mode["batch"],
            "epochs": epochs,
            "warmup_epochs": 1,
            "lr": 1e-3,
            "checkpoint_every": 0,
            "num_threads": torch.get_num_threads(),
        }
        header(
            f"frontier: hrnet_w18_small at {size} px, {epochs} epochs, batch {mode['batch']}, "
            f"synthetic n={mode['n']} (386 x 480 px), CPU, {base['num_threads']} threads"
        )
        # Untimed first: the imports, and the preprocessing cache at both sizes, so that no
        # timed run pays for them.
        for split in ("train", "valid", "test"):
            for cache_size in (size, size // 2):
                dataset_for(TrainConfig.from_dict({**base, "image_size": cache_size}), split, False)
        stride2, _ = train(base, seed=0, heatmap_stride=2)
        fixed, fixed_curve = train(base, seed=0)
        seeds = [fixed] + [train(base, seed=s)[0] for s in (1, 2)]
        stages = f"{max(1, epochs // 2)}@{size // 2}"
        _, prog_curve = train(base, seed=0, epochs=2 * epochs, progressive_stages=stages)

        plain4 = test_mre(fixed, base)
        plain2 = test_mre(stride2, base)
        with_tta = test_mre(fixed, base, TTA())
        singles = [test_mre(m, base) for m in seeds]
        merged = test_mre(Ensemble(seeds, [size] * 3, [False] * 3), base)
        fixed_time, fixed_best = fixed_curve[-1][0], min(mre for _, mre in fixed_curve)
        reached = [t for t, mre in prog_curve if mre <= fixed_best]
        prog_time = reached[0] if reached else prog_curve[-1][0]

        print(f"test MRE (mm): stride 4 {plain4:.3f}, stride 2 {plain2:.3f}")
        print(f"test MRE (mm): stride 4 plain {plain4:.3f}, with TTA {with_tta:.3f}")
        print(
            "test MRE (mm): seeds 0/1/2 "
            + " / ".join(f"{s:.3f}" for s in singles)
            + f", their ensemble {merged:.3f}"
        )
        print(
            f"valid MRE (mm): fixed {size} px best {fixed_best:.3f} in {fixed_time:.1f} s; "
            f"progressive ({stages}, then {size} px) "
            + (
                f"reached it after {prog_time:.1f} s"
                if reached
                else f"did not reach it in {2 * epochs} epochs ({prog_time:.1f} s, best "
                f"{min(m for _, m in prog_curve):.3f}): the figure is a lower bound"
            )
        )
        print("decoding floor: MRE (mm) of decoding perfect targets (test split), sub-pixel")
        print("(the trainable's DARK step) | plain argmax")
        print("  size  " + "  ".join(f"stride {s:<3}" for s in (4, 2, 1)) + "  |  "
              + "  ".join(f"stride {s:<3}" for s in (4, 2, 1)))  # fmt: skip
        for floor_size in mode["floor"]:
            dark = [decoding_floor(base, floor_size, s) for s in (4, 2, 1)]
            plain = [decoding_floor(base, floor_size, s, argmax=True) for s in (4, 2, 1)]
            print(f"  {floor_size:4d}  " + "  ".join(f"{v:10.2e}" for v in dark) + "  |  "
                  + "  ".join(f"{v:10.3f}" for v in plain))  # fmt: skip
    finish(
        stride2_vs_stride4=plain2 / plain4,
        tta_vs_plain=with_tta / plain4,
        ensemble_vs_best_single=merged / min(singles),
        progressive_time_to_match=prog_time / fixed_time,
    )


if __name__ == "__main__":
    main()
