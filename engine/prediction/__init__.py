"""Prediction: inputs, the dynamic-graph predictor and result objects."""
