"""InstSeg engine: config, data, models, training, evaluation, prediction and export."""
