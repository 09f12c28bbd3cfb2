"""Evaluation: COCO mask and box AP over a model's predictions."""
