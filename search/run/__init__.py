"""Running a study: start, resume and settle (``lifecycle``), the Ray cluster and its
resources (``cluster``), the tuner Ray runs (``tuner``) with the searcher that keeps Optuna true
(``searcher``), the study lock, and the study's dataset.
"""
