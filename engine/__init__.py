"""InstSeg engine: config, data, models, training, evaluation, prediction and export."""
from engine.runtime import quiet_warnings

quiet_warnings.install()  # before anything here imports Paddle
