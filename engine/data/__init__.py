"""Data pipeline: COCO instance dataset, transforms, batching and loaders (contract: docs/ENGINE.md)."""
