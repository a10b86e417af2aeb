"""The trainable settings a study sets on every trial, from its own keys (dataset, budget, seed,
resources). A space may neither search nor fix them; ``StudySpec.trial_settings`` writes them.
"""

from __future__ import annotations

STUDY_SET_KEYS = (
    "data_dir",  # the dataset folder (generated synthetic data included)
    "synthetic",  # the generator key of synthetic data, to regenerate a deleted cache folder
    "dataset_format",  # the reader: synthetic data is written in the Aariz layout
    "cache_dir",  # the machine's preprocessing cache
    "annotator",  # dataset.annotator
    "epochs",  # max_epochs: what a trial that is never stopped trains
    "seed",  # the study's seed
    "num_threads",  # resources.cpu
)
