"""What each trainable config key means, as the README's key table says it (the table is
generated from ``trainables.config``, whose declarations carry these texts).
"""

MEANING: dict[str, str] = {
    "model": "`hrnet` | `resnet` | `unet` | `hourglass` (table below)",
    "backbone": (
        "variant: `hrnet_w18_small`, `hrnet_w18_small_v2`, `hrnet_w18`, `hrnet_w32`, "
        "`hrnet_w48`; `resnet18/34/50` for `resnet`; any timm model with stride-4…32 features "
        "for `unet` (default `resnet34`); must be null for `hourglass`"
    ),
    "hourglass_stacks": "stacks of the hourglass (each is supervised)",
    "heatmap_stride": (
        "4 | 2 | 1, for every model: heatmaps at 1/stride of the input. Below 4 an upsampling "
        "head (pixel shuffle, x2 per step, each step fused with a 3×3-conv skip from the input "
        "image at that stride) replaces the last 1×1 conv; sigma follows the stride; decoding "
        "is the same"
    ),
    "pretrained": (
        "ImageNet weights through timm (its hub cache or network; a study fetches them on "
        "every node before it starts, and refuses to start in one line where it cannot); "
        "not for `hourglass`. The GPU studies' spaces set it"
    ),
    "pretrained_file": (
        "local weights file for the backbone (checked to cover every backbone tensor)"
    ),
    "loss": "`adaptive_wing` | `heatmap` (MSE)",
    "sigma": (
        "Gaussian target sigma in heatmap pixels at stride 4 (0.75 / 1.5 / 3.0 at 128 / 256 / "
        "512 px), scaled by 4 / `heatmap_stride`, so that the target keeps its width in input "
        "pixels at any stride (a set value is read at stride 4 too)"
    ),
    "warmup_epochs": "linear warmup, stepped per iteration",
    "image_size": (
        'network input: `N` (square), `[W, H]` or `"WxH"` (a space\'s categorical names '
        'rectangles as text, `"512x640"`); each side a multiple of 32, at most 1024. Images are'
        " scaled to fit, aspect kept, and padded only on the side the input's aspect leaves "
        "over (a 512 × 640 input takes a 1935 × 2400 cephalogram almost without padding). "
        "Metrics stay in original pixels × mm"
    ),
    "progressive_stages": (
        'progressive resolution: `[[epochs, size], …]` or the same as text, `"3@256,3@512"` (a '
        "space's categorical names them as text): the stages run first, in order, then "
        "`image_size` until `epochs`. Weights, optimiser and schedule carry over; the heatmap "
        "stride stays, sigma follows each stage's size; each epoch reports its `input_px` (the "
        "long side). Early epochs, and so early ASHA rungs, are cheap: resolution becomes a "
        "fidelity"
    ),
    "precision": (
        "`auto`: on CUDA bf16 where the GPU has it natively (compute capability ≥ 8.0: A100, "
        "H100, RTX 30xx+), else fp16 + GradScaler; fp32 on CPU | `fp32` | `fp16` (CUDA only) | "
        "`bf16` (refused on a GPU without native bf16, where it would run emulated and slow; "
        "allowed on CPU)"
    ),
    "train_on": "`train` | `train+valid` (the split(s) the model learns from; promotion option)",
    "augment": (
        "train split only: one affine warp (rotation, scale, translation) for image and "
        "landmarks, then brightness / contrast / gamma"
    ),
    "aug_flip": (
        "with `augment`: mirror x with probability 0.5 (cephalograms face either way). Only x "
        "mirrors: on a lateral cephalogram every landmark is on the midline or the mean of a "
        "bilateral pair, so no two landmarks swap names"
    ),
    "compile": (
        "compile the model with `torch.compile` (inductor) for training and validation: a "
        "one-off compile of a minute or more on first use and at each new input size, repaid "
        "by a long run's faster steps (`promote --compile`), not by a search's short trials; "
        "checkpoints and the registered model stay plain PyTorch"
    ),
    "num_workers": (
        "DataLoader worker processes; auto: 0 on CPU (the step dominates and a worker only "
        "competes for the trial's cores), the trial's CPUs less one on CUDA (a worker reads "
        "cached uint8 images and draws their augmentation, which the GPU applies)"
    ),
    "cpu_memory_gb": (
        "host memory (GiB) each epoch's training and validation may add to the built run "
        "(`RLIMIT_DATA` of the trial's process, its private writable memory, lifted for the "
        "report; not the address space, which CUDA reserves far beyond its use; CPU kernels "
        "run without oneDNN under it): a step that does not fit goes on with half the "
        "micro-batch, and one that does not fit one sample fails fast as `oom: …` instead of "
        "swapping or meeting the kernel's OOM killer"
    ),
    "best_metric": (
        "the valid metric whose best epoch the best checkpoint keeps (`promote` writes the "
        "study's `metric`)"
    ),
    "best_mode": "`min` | `max`; null: max for `sdr_*`, min otherwise",
    "checkpoint_every": (
        "epochs between checkpoints, and always the last (0 = none); each one cost a tiny trial"
        " 0.17 s (benchmarks), a large model far more, and a resumed trial loses at most this "
        "many epochs"
    ),
    "seed": (
        "Python, NumPy, torch, shuffling and augmentation (per epoch and image, so a resumed "
        "run continues exactly on CPU, loader workers or not; on a GPU see below)"
    ),
    "num_threads": "torch threads of a run (a study sets it from `resources.cpu`)",
    "data_dir": "the dataset folder (relative to a training config; a study sets it)",
    "dataset_format": (
        "the dataset's reader: `aariz` | `isbi` | `coco` | `csv` (a study sets it; synthetic "
        "data is written in the Aariz layout)"
    ),
    "annotator": (
        "the ground truth: `senior` | `junior` | `mean` (a study sets it from `dataset.annotator`)"
    ),
    "synthetic": (
        "the generator key of synthetic data: a trial regenerates `data_dir` there if the cache"
        " folder holding it was deleted mid-study (a study sets it)"
    ),
    "cache_dir": "the shared preprocessing cache (a study sets it)",
}
