"""What a study leaves: the Optuna storage (``storage``), the trials in it and the one writer of
their terminal states (``trials``), their ranking (``ranking``), and MLflow: the tracking store
(``tracking``) and a study's tree of runs (``lineage``); a trial's life in both, Optuna first,
has one owner (``study_record``).
"""
