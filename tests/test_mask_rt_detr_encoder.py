"""PPHGNetV2 + MaskHybridEncoder behaviour: position embedding order, any input size, batch independence,
exported graphs with dynamic H / W (Paddle Inference, oneDNN too) equal to the dynamic graph, the shared
attention's masks, argument errors, and PaddleDetection's own outputs on seeded weights
(tests/fixtures/ppdet_mask_rt_detr_golden.json, written by tools/make_mask_rt_detr_golden.py; the full-size
check on random weights is tools/ppdet_detr_parity.py --part backbone_neck)."""
import json
import sys
from pathlib import Path
from typing import List, Tuple

import numpy as np
import paddle
import pytest
from paddle import inference as paddle_infer

from engine.config.architectures import MaskRTDETRArchitecture
from engine.deployment.inference import MODEL_FILES, build_config, onednn_flag
from engine.errors import ConfigError
from engine.models.detectors.mask_rt_detr_parts import build_backbone_and_neck
from engine.models.layers.attention import MultiHeadAttention
from engine.models.necks.mask_hybrid_encoder import MaskHybridEncoder, sincos_position_embedding

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import backbone_golden  # noqa: E402  (tests/ is on sys.path under pytest)
import make_mask_rt_detr_golden as golden  # noqa: E402

TINY = MaskRTDETRArchitecture(backbone_width_mult=0.25, encoder_hidden_dim=32, encoder_ffn_dim=64,
                              mask_feat_channels=[16, 8], num_prototypes=12)


def _tiny(size: str = "S") -> Tuple[paddle.nn.Layer, paddle.nn.Layer]:
    paddle.seed(3)
    backbone, neck = build_backbone_and_neck(size, TINY)
    backbone.eval()
    neck.eval()
    return backbone, neck


def _run(backbone: paddle.nn.Layer, neck: paddle.nn.Layer, image: np.ndarray) -> List[np.ndarray]:
    with paddle.no_grad():
        fused, mask_feat = neck(backbone(paddle.to_tensor(image)))
    return [t.numpy() for t in fused] + [mask_feat.numpy()]


def test_position_embedding_follows_paddledetection_token_order() -> None:
    # dim 4: one frequency (1.0); token t of a 2 x 3 map gets a = t // h, b = t % h (see the docstring)
    got = sincos_position_embedding(2, 3, 4).numpy()
    a = np.array([0, 0, 1, 1, 2, 2], dtype="float32")
    b = np.array([0, 1, 0, 1, 0, 1], dtype="float32")
    expected = np.stack([np.sin(a), np.cos(a), np.sin(b), np.cos(b)], axis=1)[None]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-7)
    assert list(sincos_position_embedding(5, 7, 32).shape) == [1, 35, 32]
    with pytest.raises(ConfigError, match="divisible by 4"):
        sincos_position_embedding(2, 2, 30)


@pytest.mark.parametrize("size", ["S", "L"])
def test_any_input_size_and_batch_independence(size: str) -> None:
    backbone, neck = _tiny(size)
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1, (2, 3, 96, 160)).astype("float32")
    feats = backbone(paddle.to_tensor(image))
    given = list(feats)
    with paddle.no_grad():
        fused, mask_feat = neck(given)
    assert given == feats  # the input list is not consumed
    assert neck.out_strides == [8, 16, 32] and neck.out_channels == [32, 32, 32]
    assert [list(t.shape) for t in fused] == [[2, 32, 96 // s, 160 // s] for s in (8, 16, 32)]
    assert list(mask_feat.shape) == [2, 12, 24, 40]
    # each image's outputs do not depend on the other image of the batch
    alone = _run(backbone, neck, image[1:])
    for both, single in zip(_run(backbone, neck, image), alone):
        np.testing.assert_allclose(both[1:], single, rtol=1e-5, atol=1e-5)


def test_exported_graph_with_dynamic_size_equals_dynamic_graph(tmp_path: Path) -> None:
    """One traced graph (dynamic batch, H, W) on Paddle Inference, Paddle kernels and oneDNN, at two aspect
    ratios: the position embedding follows the shape and the bilinear upsampling runs on oneDNN."""
    backbone, neck = _tiny("S")

    class Parts(paddle.nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.backbone, self.neck = backbone, neck

        def forward(self, image: paddle.Tensor) -> List[paddle.Tensor]:
            fused, mask_feat = self.neck(self.backbone(image))
            return fused + [mask_feat]

    model = Parts()
    model.eval()
    spec = [paddle.static.InputSpec([None, 3, None, None], "float32", "image")]
    traced = paddle.jit.to_static(model, input_spec=spec, full_graph=True)
    paddle.jit.save(traced, str(tmp_path / "inference"))
    model_file = next(tmp_path / name for name in MODEL_FILES if (tmp_path / name).exists())
    rng = np.random.default_rng(1)
    for run_mode in ("paddle", "mkldnn"):
        with onednn_flag(run_mode == "mkldnn"):
            predictor = paddle_infer.create_predictor(
                build_config(model_file, tmp_path / "inference.pdiparams", "cpu", 1, run_mode))
        for h, w in ((64, 96), (96, 64)):
            image = rng.uniform(0, 1, (2, 3, h, w)).astype("float32")
            predictor.get_input_handle(predictor.get_input_names()[0]).copy_from_cpu(image)
            with onednn_flag(run_mode == "mkldnn"):
                predictor.run()
            got = [predictor.get_output_handle(n).copy_to_cpu() for n in predictor.get_output_names()]
            expected = _run(backbone, neck, image)
            assert [a.shape for a in got] == [b.shape for b in expected]
            for a, b in zip(got, expected):
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=f"{run_mode} {h}x{w}")


def test_attention_masks_bool_and_additive_agree_and_hide_keys() -> None:
    paddle.seed(0)
    attn = MultiHeadAttention(16, 4)
    attn.eval()
    x = paddle.randn([2, 5, 16])
    keep = paddle.to_tensor([True, True, False, True, False]).reshape([1, 1, 1, 5])
    additive = paddle.where(keep, paddle.zeros([1]), paddle.full([1], float("-inf")))
    with paddle.no_grad():
        by_bool, by_float = attn(x, x, x, attn_mask=keep), attn(x, x, x, attn_mask=additive)
        kept = paddle.to_tensor([0, 1, 3])
        subset = attn(x, paddle.gather(x, kept, axis=1), paddle.gather(x, kept, axis=1))
    np.testing.assert_allclose(by_bool.numpy(), by_float.numpy(), rtol=0, atol=0)
    np.testing.assert_allclose(by_bool.numpy(), subset.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="divisible"):
        MultiHeadAttention(10, 4)


def test_input_sides_not_multiples_of_32_are_config_errors() -> None:
    backbone, neck = _tiny("S")
    with pytest.raises(ConfigError, match="multiples of 32"):
        neck(backbone(paddle.zeros([1, 3, 64, 80])))


def test_bad_encoder_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="strides 4, 8, 16"):
        MaskHybridEncoder([8, 16, 32], feat_strides=(8, 16, 32))
    with pytest.raises(ConfigError, match="encoder levels"):
        MaskHybridEncoder([8, 16, 32, 64], encoder_idx=(0,))
    with pytest.raises(ConfigError, match="size must be one of"):
        build_backbone_and_neck("XL")
    with pytest.raises(ConfigError, match="encoder_hidden_dim must be a positive multiple of 8.*got 60"):
        build_backbone_and_neck("S", MaskRTDETRArchitecture(encoder_hidden_dim=60))
    with pytest.raises(ConfigError, match="backbone_width_mult.*mask_feat_channels must be 2"):
        build_backbone_and_neck("S", MaskRTDETRArchitecture(backbone_width_mult=2.0, mask_feat_channels=[8]))


@pytest.mark.parametrize("size", golden.SIZES)
def test_outputs_match_paddledetection_on_seeded_weights(size: str) -> None:
    expected = json.loads(golden.OUT.read_text())[size]
    backbone, neck = build_backbone_and_neck(size)
    parts = [("backbone.", backbone), ("neck.", neck)]
    entries = [(p + k, v.shape) for p, layer in parts for k, v in layer.state_dict().items()]
    values = golden.seeded_values(entries)
    for prefix, layer in parts:
        layer.set_state_dict({k: values[prefix + k] for k in layer.state_dict()})
        layer.eval()
    backbone_golden.assert_matches(backbone_golden.summary(_outputs(backbone, neck)), expected)


def _outputs(backbone: paddle.nn.Layer, neck: paddle.nn.Layer) -> List[np.ndarray]:
    """The 4 backbone maps, 3 encoder levels and the mask prototypes of the golden input."""
    with paddle.no_grad():
        feats = backbone(paddle.to_tensor(golden.image()))
        fused, mask_feat = neck(feats)
    return [t.numpy() for t in list(feats) + list(fused) + [mask_feat]]
