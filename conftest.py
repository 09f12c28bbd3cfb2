"""Lets plain `pytest` import the repo's packages (engine, dataset_tools) from the repo root."""
