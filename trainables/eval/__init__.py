"""From heatmaps to millimetres: decoding, the metric, one inference path for training,
evaluation, promotion and prediction, prediction files and overlays."""
