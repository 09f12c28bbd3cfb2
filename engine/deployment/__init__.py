"""Deployment: export to a static graph and the Paddle Inference predictor."""
