"""Running a study: start, resume and settle (``lifecycle``), the Ray cluster and its
resources (``cluster``), the tuner Ray runs (``tuner``) with the searcher, callback and stopper
that tell the study's record of every trial (``searcher``), the study lock, and the study's
dataset.
"""
