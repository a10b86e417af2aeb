"""Datasets: readers of the Aariz and ISBI 2015 layouts behind one registry
(``trainables.data.formats``), the records they produce, the shared preprocessing cache,
augmentation, dataset checks and the synthetic generator. Importing this package imports no
torch (the driver checks data with it); ``trainables.data.dataset`` and ``augment`` do.
"""
