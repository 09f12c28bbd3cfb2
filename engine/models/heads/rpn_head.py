"""Region Proposal Network head (Faster R-CNN, https://arxiv.org/abs/1506.01497).

Parameter names are an external contract: they reproduce PaddleDetection's state_dict
(`rpn_head.rpn_feat.rpn_conv`, `rpn_head.rpn_rois_score`, `rpn_head.rpn_rois_delta`).
"""
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.nn.initializer import Normal

from ..losses.rcnn import rpn_loss
from ..ops.anchors import AnchorGenerator
from ..ops.assigners import GroundTruth, rpn_targets
from ..ops.proposals import ProposalConfig, generate_rpn_proposals


@dataclass
class RPNSampling:
    """Anchor labelling and sampling for the RPN loss (PaddleDetection's RPNTargetAssign)."""

    batch_size_per_im: int = 256
    fg_fraction: float = 0.5
    positive_overlap: float = 0.7
    negative_overlap: float = 0.3


def _conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv2D:
    return nn.Conv2D(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                     weight_attr=paddle.ParamAttr(initializer=Normal(mean=0.0, std=0.01)))


class RPNFeat(nn.Layer):
    """The 3x3 conv + ReLU shared by every level."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.rpn_conv = _conv(in_channels, out_channels, 3)

    def forward(self, feats: Sequence[paddle.Tensor]) -> List[paddle.Tensor]:
        return [F.relu(self.rpn_conv(f)) for f in feats]


class RPNHead(nn.Layer):
    """Objectness and box deltas for A anchors per location, shared over levels.

    Args:
        in_channels: channels of every input level (FPN width, or res4 for C4).
        anchor_generator: anchors per level; its `num_anchors` sets the output channels.
        train_proposals, test_proposals: proposal settings for training / inference.
        sampling: anchor sampling for the loss.
    """

    def __init__(self, in_channels: int, anchor_generator: AnchorGenerator,
                 train_proposals: ProposalConfig, test_proposals: ProposalConfig,
                 sampling: RPNSampling) -> None:
        super().__init__()
        self.anchor_generator = anchor_generator
        self.train_proposals = train_proposals
        self.test_proposals = test_proposals
        self.sampling = sampling
        num_anchors = anchor_generator.num_anchors
        self.rpn_feat = RPNFeat(in_channels, in_channels)
        self.rpn_rois_score = _conv(in_channels, num_anchors, 1)
        self.rpn_rois_delta = _conv(in_channels, 4 * num_anchors, 1)

    def forward(self, feats: Sequence[paddle.Tensor]) -> Tuple[List[paddle.Tensor], List[paddle.Tensor]]:
        """Per level: logits float32 [N, A, H, W] and deltas float32 [N, 4A, H, W]."""
        hidden = self.rpn_feat(feats)
        return [self.rpn_rois_score(h) for h in hidden], [self.rpn_rois_delta(h) for h in hidden]

    def predict(self, feats: Sequence[paddle.Tensor],
                im_shape: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """Inference proposals: rois float32 [R, 4] grouped by image, rois_num int32 [N]."""
        scores, deltas = self(feats)
        return generate_rpn_proposals(scores, deltas, self.anchor_generator(feats), im_shape,
                                      self.test_proposals)

    def loss(self, feats: Sequence[paddle.Tensor], im_shape: paddle.Tensor,
             gt: GroundTruth) -> Tuple[paddle.Tensor, paddle.Tensor, Dict[str, paddle.Tensor]]:
        """Training proposals (as `predict`, with the train settings) and the RPN losses."""
        scores, deltas = self(feats)
        anchors = self.anchor_generator(feats)
        rois, rois_num = generate_rpn_proposals(scores, deltas, anchors, im_shape, self.train_proposals)
        num_images = scores[0].shape[0]
        # [N, A, H, W] -> [N, H * W * A] per level, then levels side by side, to line up with the anchors.
        flat_scores = paddle.concat([s.transpose([0, 2, 3, 1]).reshape([num_images, -1]) for s in scores],
                                    axis=1)
        flat_deltas = paddle.concat([d.transpose([0, 2, 3, 1]).reshape([num_images, -1, 4]) for d in deltas],
                                    axis=1)
        s = self.sampling
        labels, target_deltas = rpn_targets(paddle.concat(anchors), gt, num_images, s.batch_size_per_im,
                                            s.fg_fraction, s.positive_overlap, s.negative_overlap)
        losses = rpn_loss(flat_scores.flatten(), flat_deltas.reshape([-1, 4]), labels, target_deltas,
                          float(s.batch_size_per_im * num_images))
        return rois, rois_num, losses
