"""The 15 PaddleX instance-segmentation model names and their families.

Kept free of Paddle imports so that config validation and check_dataset start fast;
`engine/models/zoo.py` maps the same names to builders (a test keeps the two in step).
"""
from typing import Dict

MODEL_FAMILIES: Dict[str, str] = {
    "MaskRCNN-ResNet50": "rcnn",
    "MaskRCNN-ResNet50-FPN": "rcnn",
    "MaskRCNN-ResNet50-vd-FPN": "rcnn",
    "MaskRCNN-ResNet101-FPN": "rcnn",
    "MaskRCNN-ResNet101-vd-FPN": "rcnn",
    "MaskRCNN-ResNeXt101-vd-FPN": "rcnn",
    "Cascade-MaskRCNN-ResNet50-FPN": "rcnn",
    "Cascade-MaskRCNN-ResNet50-vd-SSLDv2-FPN": "rcnn",
    "SOLOv2": "solov2",
    "Mask-RT-DETR-S": "mask_rt_detr",
    "Mask-RT-DETR-M": "mask_rt_detr",
    "Mask-RT-DETR-L": "mask_rt_detr",
    "Mask-RT-DETR-X": "mask_rt_detr",
    "Mask-RT-DETR-H": "mask_rt_detr",
    "PP-YOLOE_seg-S": "ppyoloe_seg",
}
