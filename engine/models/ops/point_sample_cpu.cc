// Bilinear point sampling of CPU float32 maps as a Paddle custom operator: paddle's grid_sample with
// mode="bilinear", padding_mode="zeros", align_corners=False for x [N, C, H, W] and a grid [N, P, 2] of
// (x, y) in [-1, 1], giving [N, C, P], and its gradient with respect to x (the grid gets none: callers
// use it for fixed sample points only). Mask-RT-DETR's matcher and mask losses sample every query's mask
// logits at ~12.5k random points this way; Paddle's kernel materialises four [N, C, P] corner tensors and
// runs single-threaded, which made it one of the slowest parts of a training step.
//
// Positions and weights follow Paddle's CPU kernel: x_pix = (g + 1) * W / 2 - 0.5, corners floor(x_pix)
// and floor(x_pix) + 1 weighted by the distance to the opposite corner, corners off the map give zero.
// The four taps of each point are computed once per image and reused for all C channels; a corner off
// the map becomes tap 0 with weight 0 (the same result for finite inputs, and no branch in the loops).
// Threads split the (image, channel) planes, forward and backward, so the gradient of a plane is
// accumulated by one thread (no atomics; the result does not depend on the thread count).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "paddle/extension.h"

namespace {

struct Taps {  // per point: the four corners' offsets in the plane and their weights
  std::vector<int64_t> index;
  std::vector<float> weight;
};

paddle::Tensor contiguous(const paddle::Tensor& t) { return t.is_contiguous() ? t : t.contiguous(); }

void check_inputs(const paddle::Tensor& x, const paddle::Tensor& grid) {
  PD_CHECK(x.is_cpu() && grid.is_cpu(), "point_sample (native): CPU tensors only");
  PD_CHECK(x.dtype() == paddle::DataType::FLOAT32 && grid.dtype() == paddle::DataType::FLOAT32,
           "point_sample (native): float32 only");
  PD_CHECK(x.shape().size() == 4, "point_sample: x must be [N, C, H, W]");
  PD_CHECK(grid.shape().size() == 3 && grid.shape()[2] == 2 && grid.shape()[0] == x.shape()[0],
           "point_sample: grid must be [N, P, 2] with x's N");
}

// The taps of image n's points (grid [N, P, 2]) on an H x W map.
void make_taps(const float* grid, int64_t n, int64_t points, int height, int width, Taps* taps) {
  taps->index.assign(points * 4, 0);
  taps->weight.assign(points * 4, 0.f);
  const float half_w = static_cast<float>(width) * 0.5f, half_h = static_cast<float>(height) * 0.5f;
  for (int64_t p = 0; p < points; ++p) {
    const float* g = grid + (n * points + p) * 2;
    const float x = (g[0] + 1.f) * half_w - 0.5f;
    const float y = (g[1] + 1.f) * half_h - 0.5f;
    // also rejects NaN and keeps the int conversions in range; past these bounds every corner is off
    const bool near_x = x >= -1.f && x < static_cast<float>(width);
    if (!(near_x && y >= -1.f && y < static_cast<float>(height))) continue;
    const float fx = std::floor(x), fy = std::floor(y);
    const int x0 = static_cast<int>(fx), y0 = static_cast<int>(fy);
    const float d_w = x - fx, d_e = (fx + 1.f) - x, d_n = y - fy, d_s = (fy + 1.f) - y;
    const int cx[4] = {x0, x0 + 1, x0, x0 + 1};
    const int cy[4] = {y0, y0, y0 + 1, y0 + 1};
    const float w[4] = {d_e * d_s, d_w * d_s, d_e * d_n, d_w * d_n};
    for (int j = 0; j < 4; ++j) {
      if (cx[j] < 0 || cx[j] >= width || cy[j] < 0 || cy[j] >= height) continue;
      taps->index[p * 4 + j] = static_cast<int64_t>(cy[j]) * width + cx[j];
      taps->weight[p * 4 + j] = w[j];
    }
  }
}

std::vector<Taps> all_taps(const paddle::Tensor& x, const paddle::Tensor& grid) {
  const int64_t images = x.shape()[0], points = grid.shape()[1];
  std::vector<Taps> taps(images);
  const float* g = grid.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < images; ++n) {
    make_taps(g, n, points, static_cast<int>(x.shape()[2]), static_cast<int>(x.shape()[3]), &taps[n]);
  }
  return taps;
}

std::vector<paddle::Tensor> PointSampleForward(const paddle::Tensor& x_in, const paddle::Tensor& grid_in) {
  const paddle::Tensor x = contiguous(x_in), grid = contiguous(grid_in);
  check_inputs(x, grid);
  const int64_t images = x.shape()[0], channels = x.shape()[1], points = grid.shape()[1];
  const int64_t plane = x.shape()[2] * x.shape()[3];
  paddle::Tensor out = paddle::empty({images, channels, points}, paddle::DataType::FLOAT32, x.place());
  if (images * channels * points == 0) return {out};
  const std::vector<Taps> taps = all_taps(x, grid);
  const float* src = x.data<float>();
  float* dst = out.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t nc = 0; nc < images * channels; ++nc) {
    const float* map = src + nc * plane;
    const int64_t* index = taps[nc / channels].index.data();
    const float* weight = taps[nc / channels].weight.data();
    float* o = dst + nc * points;
    for (int64_t p = 0; p < points; ++p) {
      const int64_t* i = index + p * 4;
      const float* w = weight + p * 4;
      o[p] = w[0] * map[i[0]] + w[1] * map[i[1]] + w[2] * map[i[2]] + w[3] * map[i[3]];
    }
  }
  return {out};
}

std::vector<paddle::Tensor> PointSampleBackward(const paddle::Tensor& x_in, const paddle::Tensor& grid_in,
                                                const paddle::Tensor& out_grad_in) {
  const paddle::Tensor x = contiguous(x_in), grid = contiguous(grid_in);
  const paddle::Tensor out_grad = contiguous(out_grad_in);
  check_inputs(x, grid);
  const int64_t images = x.shape()[0], channels = x.shape()[1], points = grid.shape()[1];
  const int64_t plane = x.shape()[2] * x.shape()[3];
  paddle::Tensor dx = paddle::empty(x.shape(), paddle::DataType::FLOAT32, x.place());
  float* gx = dx.data<float>();
  std::fill(gx, gx + images * channels * plane, 0.f);
  if (images * channels * points == 0) return {dx};
  const std::vector<Taps> taps = all_taps(x, grid);
  const float* go = out_grad.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t nc = 0; nc < images * channels; ++nc) {
    float* map_grad = gx + nc * plane;
    const int64_t* index = taps[nc / channels].index.data();
    const float* weight = taps[nc / channels].weight.data();
    const float* g = go + nc * points;
    for (int64_t p = 0; p < points; ++p) {
      for (int j = 0; j < 4; ++j) map_grad[index[p * 4 + j]] += weight[p * 4 + j] * g[p];
    }
  }
  return {dx};
}

std::vector<std::vector<int64_t>> PointSampleForwardShape(const std::vector<int64_t>& x_shape,
                                                          const std::vector<int64_t>& grid_shape) {
  return {{x_shape[0], x_shape[1], grid_shape[1]}};
}

std::vector<paddle::DataType> PointSampleForwardDtype(const paddle::DataType& x_dtype,
                                                      const paddle::DataType& grid_dtype) {
  return {x_dtype};
}

std::vector<std::vector<int64_t>> PointSampleBackwardShape(const std::vector<int64_t>& x_shape,
                                                           const std::vector<int64_t>& grid_shape,
                                                           const std::vector<int64_t>& out_grad_shape) {
  return {x_shape};
}

}  // namespace

PD_BUILD_OP(instseg_point_sample)
    .Inputs({"X", "Grid"})
    .Outputs({"Out"})
    .SetKernelFn(PD_KERNEL(PointSampleForward))
    .SetInferShapeFn(PD_INFER_SHAPE(PointSampleForwardShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(PointSampleForwardDtype));

PD_BUILD_GRAD_OP(instseg_point_sample)
    .Inputs({"X", "Grid", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X")})
    .SetKernelFn(PD_KERNEL(PointSampleBackward))
    .SetInferShapeFn(PD_INFER_SHAPE(PointSampleBackwardShape));
