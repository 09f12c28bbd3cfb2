// Multi-scale deformable attention for CPU float32 as a Paddle custom operator, forward and backward.
//
// out[b, q, m, :] = sum over levels l and points p of weight[b, q, m, l, p] * (bilinear sample of head
// m's values on level l at location[b, q, m, l, p]), which is what ms_deform_attn.deformable_sample
// computes with one paddle grid_sample per level (bilinear, align_corners=False, zero padding) and a
// weighted sum. The sample positions and weights follow Paddle's CPU grid_sample kernel: the grid
// coordinate g = 2 * location - 1 is unnormalised to x = (g + 1) * W / 2 - 0.5, the four corners
// floor(x), floor(x) + 1 (and y alike) weigh by the distances to the opposite corner, and a corner
// outside [0, W - 1] x [0, H - 1] contributes zero (to the output and to every gradient). Results agree
// with the grid_sample formulation to float rounding (tests/test_ms_deform_attn.py).
//
// Layout. The values come as one tensor [B, S, M, D] (S = sum of H_l * W_l over levels, row-major
// (y, x) within a level; M heads of D channels), the layout value_proj produces: a map position of one
// head is D adjacent floats, so every bilinear tap is a short contiguous vector operation over channels
// (the loops below vectorise), and no transpose to grid_sample's [B * M, D, H, W] is needed in either
// direction. A head's whole map (S * D floats, strided by M * D) stays in cache while all its queries
// are sampled from it.
//
// Threads. The forward splits (batch, head, query) rows; each writes its own D outputs. The backward
// gives each thread whole (batch, head) pairs: it alone accumulates that head's value gradient and
// writes those queries' location and weight gradients, so no atomics are needed and the result does
// not depend on the thread count (at most B * M threads do work). The thread count is the OpenMP
// default of the runtime the library is linked with (compiled_ops.py links Paddle's libiomp5, so
// paddle's set_num_threads applies).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "paddle/extension.h"

namespace {

struct Dims {
  int64_t batch, keys, heads, channels, queries, levels, points;
};

struct Level {
  int height, width;
  int64_t start;  // first row of the level in the S axis
};

paddle::Tensor contiguous(const paddle::Tensor& t) { return t.is_contiguous() ? t : t.contiguous(); }

Dims check_inputs(const paddle::Tensor& value, const paddle::Tensor& shapes, const paddle::Tensor& loc,
                  const paddle::Tensor& weight) {
  PD_CHECK(value.is_cpu() && shapes.is_cpu() && loc.is_cpu() && weight.is_cpu(),
           "ms_deform_attn (native): CPU tensors only");
  PD_CHECK(value.dtype() == paddle::DataType::FLOAT32 && loc.dtype() == paddle::DataType::FLOAT32 &&
               weight.dtype() == paddle::DataType::FLOAT32,
           "ms_deform_attn (native): float32 values, locations and weights only");
  const auto& v = value.shape();
  const auto& s = loc.shape();
  PD_CHECK(v.size() == 4, "ms_deform_attn: value must be [B, S, M, D]");
  PD_CHECK(s.size() == 6 && s[5] == 2, "ms_deform_attn: locations must be [B, Q, M, L, P, 2]");
  Dims d{v[0], v[1], v[2], v[3], s[1], s[3], s[4]};
  PD_CHECK(s[0] == d.batch && s[2] == d.heads, "ms_deform_attn: locations ", s[0], " x ", s[2],
           " (batch x heads) but value ", d.batch, " x ", d.heads);
  const std::vector<int64_t> w_shape{d.batch, d.queries, d.heads, d.levels, d.points};
  PD_CHECK(weight.shape() == w_shape, "ms_deform_attn: attention weights must be [B, Q, M, L, P]");
  PD_CHECK(shapes.shape() == std::vector<int64_t>({d.levels, 2}),
           "ms_deform_attn: spatial shapes must be [L, 2] with L = the locations' level count");
  return d;
}

// (H_l, W_l) and start row of every level; their areas must add up to S.
std::vector<Level> read_levels(const paddle::Tensor& shapes, int64_t keys) {
  const int64_t count = shapes.shape()[0];
  std::vector<int64_t> hw(2 * count);
  if (shapes.dtype() == paddle::DataType::INT64) {
    std::copy(shapes.data<int64_t>(), shapes.data<int64_t>() + 2 * count, hw.begin());
  } else {
    PD_CHECK(shapes.dtype() == paddle::DataType::INT32, "ms_deform_attn: spatial shapes must be int32/64");
    std::copy(shapes.data<int32_t>(), shapes.data<int32_t>() + 2 * count, hw.begin());
  }
  std::vector<Level> levels(count);
  int64_t start = 0;
  for (int64_t l = 0; l < count; ++l) {
    PD_CHECK(hw[2 * l] > 0 && hw[2 * l + 1] > 0, "ms_deform_attn: level ", l, " has an empty map");
    levels[l] = {static_cast<int>(hw[2 * l]), static_cast<int>(hw[2 * l + 1]), start};
    start += hw[2 * l] * hw[2 * l + 1];
  }
  PD_CHECK(start == keys, "ms_deform_attn: the levels cover ", start, " positions but value has ", keys);
  return levels;
}

// One bilinear sample: the rows (map positions) of its four corners, -1 where a corner is off the map,
// and the distances Paddle's kernel weighs them by (west / east / north / south of the point).
struct Sample {
  int64_t row[4];  // (x0, y0), (x1, y0), (x0, y1), (x1, y1)
  float d_w, d_e, d_n, d_s;
  float w[4];  // the corners' bilinear weights
};

// Pixel coordinate of a [0, 1] location along an axis of `size` cells, as Paddle's grid_sample has it.
inline float unnormalise(float location, int size) {
  const float grid = 2.f * location - 1.f;
  return (grid + 1.f) * (static_cast<float>(size) * 0.5f) - 0.5f;
}

// False when no corner is on the map (then the sample and all its gradients are zero).
inline bool locate(float lx, float ly, const Level& lv, Sample* s) {
  const float x = unnormalise(lx, lv.width);
  const float y = unnormalise(ly, lv.height);
  // Past these bounds all four corners are off the map. The test also rejects NaN and keeps the int
  // conversions below in range. At exactly -1 the far corner is on the map with weight 0 but a gradient.
  if (!(x >= -1.f && x < static_cast<float>(lv.width) && y >= -1.f && y < static_cast<float>(lv.height)))
    return false;
  const float fx = std::floor(x);
  const float fy = std::floor(y);
  const int x0 = static_cast<int>(fx);
  const int y0 = static_cast<int>(fy);
  s->d_w = x - fx;
  s->d_e = (fx + 1.f) - x;
  s->d_n = y - fy;
  s->d_s = (fy + 1.f) - y;
  s->w[0] = s->d_e * s->d_s;
  s->w[1] = s->d_w * s->d_s;
  s->w[2] = s->d_e * s->d_n;
  s->w[3] = s->d_w * s->d_n;
  const bool x0_in = x0 >= 0, x1_in = x0 + 1 < lv.width;
  const bool y0_in = y0 >= 0, y1_in = y0 + 1 < lv.height;
  const int64_t base = lv.start + static_cast<int64_t>(y0) * lv.width + x0;
  s->row[0] = x0_in && y0_in ? base : -1;
  s->row[1] = x1_in && y0_in ? base + 1 : -1;
  s->row[2] = x0_in && y1_in ? base + lv.width : -1;
  s->row[3] = x1_in && y1_in ? base + lv.width + 1 : -1;
  return true;
}

// The inner loops run over the D channels of a map position (contiguous). __restrict tells the compiler
// the rows do not overlap, so it vectorises them without run-time overlap checks.

// acc[0..n) += the four corners c[j] weighted by w[j].
inline void blend_corners(const float* __restrict c0, const float* __restrict c1, const float* __restrict c2,
                          const float* __restrict c3, const float w[4], float* __restrict acc, int64_t n) {
  const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
  for (int64_t i = 0; i < n; ++i) acc[i] += w0 * c0[i] + w1 * c1[i] + w2 * c2[i] + w3 * c3[i];
}

// dst[0..n) += a * src[0..n)
inline void axpy(float a, const float* __restrict src, float* __restrict dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] += a * src[i];
}

// What one sample's upstream gradient `up` (D channels) gives its attention weight (the sample . up) and its
// pixel position x and y (up . d sample / dx, dy), corner values c[j] (zero rows off the map).
struct SampleGrad {
  float weight, x, y;
};

constexpr int kLanes = 8;  // partial sums kept per lane: a single running float sum cannot be vectorised

inline SampleGrad reduce_channels(const float* __restrict up, const float* const c[4], const Sample& s,
                                  int64_t n) {
  const float* __restrict c0 = c[0];
  const float* __restrict c1 = c[1];
  const float* __restrict c2 = c[2];
  const float* __restrict c3 = c[3];
  const float w0 = s.w[0], w1 = s.w[1], w2 = s.w[2], w3 = s.w[3];
  float dot[kLanes] = {}, dx[kLanes] = {}, dy[kLanes] = {};
  auto add = [&](int64_t i, int lane) {
    dot[lane] += up[i] * (w0 * c0[i] + w1 * c1[i] + w2 * c2[i] + w3 * c3[i]);
    dx[lane] += up[i] * ((c1[i] - c0[i]) * s.d_s + (c3[i] - c2[i]) * s.d_n);
    dy[lane] += up[i] * ((c2[i] - c0[i]) * s.d_e + (c3[i] - c1[i]) * s.d_w);
  };
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int lane = 0; lane < kLanes; ++lane) add(i + lane, lane);
  }
  for (; i < n; ++i) add(i, 0);
  SampleGrad total{0.f, 0.f, 0.f};
  for (int lane = 0; lane < kLanes; ++lane) {
    total.weight += dot[lane];
    total.x += dx[lane];
    total.y += dy[lane];
  }
  return total;
}

std::vector<paddle::Tensor> MsDeformAttnForward(const paddle::Tensor& value_in,
                                                const paddle::Tensor& shapes_in, const paddle::Tensor& loc_in,
                                                const paddle::Tensor& weight_in) {
  const paddle::Tensor value = contiguous(value_in), shapes = contiguous(shapes_in);
  const paddle::Tensor loc = contiguous(loc_in), weight = contiguous(weight_in);
  const Dims d = check_inputs(value, shapes, loc, weight);
  const std::vector<Level> levels = read_levels(shapes, d.keys);
  paddle::Tensor out = paddle::empty({d.batch, d.queries, d.heads * d.channels}, paddle::DataType::FLOAT32,
                                     value.place());
  const int64_t rows = d.batch * d.heads * d.queries;
  if (rows == 0 || d.channels == 0) return {out};
  const float* v = value.data<float>();
  const float* lc = loc.data<float>();
  const float* aw = weight.data<float>();
  float* o = out.data<float>();
  const int64_t C = d.channels, row_stride = d.heads * d.channels, samples = d.levels * d.points;

#pragma omp parallel
  {
    const std::vector<float> zeros(C, 0.f);  // the value of a corner off the map
#pragma omp for schedule(static)
    for (int64_t i = 0; i < rows; ++i) {  // (b, m, q): a thread's rows share heads, so their maps stay cached
      const int64_t q = i % d.queries, bm = i / d.queries, m = bm % d.heads, b = bm / d.heads;
      const int64_t at = (b * d.queries + q) * d.heads + m;  // (b, q, m) in the locations and weights
      float* acc = o + at * C;
      std::fill(acc, acc + C, 0.f);
      const float* head = v + b * d.keys * row_stride + m * C;
      for (int64_t k = 0; k < samples; ++k) {
        Sample s;
        const float* xy = lc + (at * samples + k) * 2;
        if (!locate(xy[0], xy[1], levels[k / d.points], &s)) continue;
        const float a = aw[at * samples + k];
        const float w[4] = {a * s.w[0], a * s.w[1], a * s.w[2], a * s.w[3]};
        const float* c[4];
        for (int j = 0; j < 4; ++j) c[j] = s.row[j] < 0 ? zeros.data() : head + s.row[j] * row_stride;
        blend_corners(c[0], c[1], c[2], c[3], w, acc, C);
      }
    }
  }
  return {out};
}

std::vector<paddle::Tensor> MsDeformAttnBackward(const paddle::Tensor& value_in,
                                                 const paddle::Tensor& shapes_in,
                                                 const paddle::Tensor& loc_in,
                                                 const paddle::Tensor& weight_in,
                                                 const paddle::Tensor& out_grad_in) {
  const paddle::Tensor value = contiguous(value_in), shapes = contiguous(shapes_in);
  const paddle::Tensor loc = contiguous(loc_in), weight = contiguous(weight_in);
  const paddle::Tensor out_grad = contiguous(out_grad_in);
  const Dims d = check_inputs(value, shapes, loc, weight);
  const std::vector<Level> levels = read_levels(shapes, d.keys);
  paddle::Tensor d_value = paddle::empty(value.shape(), paddle::DataType::FLOAT32, value.place());
  paddle::Tensor d_loc = paddle::empty(loc.shape(), paddle::DataType::FLOAT32, loc.place());
  paddle::Tensor d_weight = paddle::empty(weight.shape(), paddle::DataType::FLOAT32, weight.place());
  const float* v = value.data<float>();
  const float* lc = loc.data<float>();
  const float* aw = weight.data<float>();
  const float* go = out_grad.data<float>();
  float* gv = d_value.data<float>();
  float* gl = d_loc.data<float>();
  float* ga = d_weight.data<float>();
  const int64_t C = d.channels, row_stride = d.heads * d.channels, samples = d.levels * d.points;
  const int64_t pairs = d.batch * d.heads;

#pragma omp parallel
  {
    const std::vector<float> zeros(C, 0.f);  // the value of a corner off the map
#pragma omp for schedule(static)
    for (int64_t bm = 0; bm < pairs; ++bm) {  // one (batch, head): its value gradient is this thread's
      const int64_t b = bm / d.heads, m = bm % d.heads;
      const float* head = v + b * d.keys * row_stride + m * C;
      float* head_grad = gv + b * d.keys * row_stride + m * C;
      for (int64_t r = 0; r < d.keys; ++r) {
        std::fill(head_grad + r * row_stride, head_grad + r * row_stride + C, 0.f);
      }
      for (int64_t q = 0; q < d.queries; ++q) {
        const int64_t at = (b * d.queries + q) * d.heads + m;
        const float* g = go + at * C;
        for (int64_t k = 0; k < samples; ++k) {
          const int64_t idx = at * samples + k;
          const float* xy = lc + idx * 2;
          const Level& lv = levels[k / d.points];
          Sample s;
          if (!locate(xy[0], xy[1], lv, &s)) {
            ga[idx] = 0.f;
            gl[idx * 2] = gl[idx * 2 + 1] = 0.f;
            continue;
          }
          const float a = aw[idx];
          const float* c[4];
          for (int j = 0; j < 4; ++j) c[j] = s.row[j] < 0 ? zeros.data() : head + s.row[j] * row_stride;
          const SampleGrad sg = reduce_channels(g, c, s, C);
          for (int j = 0; j < 4; ++j) {
            if (s.row[j] >= 0) axpy(a * s.w[j], g, head_grad + s.row[j] * row_stride, C);
          }
          ga[idx] = sg.weight;
          // d pixel / d location = 2 (grid = 2 * location - 1) * size / 2 (unnormalise)
          gl[idx * 2] = a * sg.x * (static_cast<float>(lv.width) * 0.5f) * 2.f;
          gl[idx * 2 + 1] = a * sg.y * (static_cast<float>(lv.height) * 0.5f) * 2.f;
        }
      }
    }
  }
  return {d_value, d_loc, d_weight};
}

std::vector<std::vector<int64_t>> MsDeformAttnForwardShape(const std::vector<int64_t>& value_shape,
                                                           const std::vector<int64_t>& shapes_shape,
                                                           const std::vector<int64_t>& loc_shape,
                                                           const std::vector<int64_t>& weight_shape) {
  return {{value_shape[0], loc_shape[1], value_shape[2] * value_shape[3]}};
}

std::vector<paddle::DataType> MsDeformAttnForwardDtype(const paddle::DataType& value_dtype,
                                                       const paddle::DataType& shapes_dtype,
                                                       const paddle::DataType& loc_dtype,
                                                       const paddle::DataType& weight_dtype) {
  return {value_dtype};
}

std::vector<std::vector<int64_t>> MsDeformAttnBackwardShape(const std::vector<int64_t>& value_shape,
                                                            const std::vector<int64_t>& shapes_shape,
                                                            const std::vector<int64_t>& loc_shape,
                                                            const std::vector<int64_t>& weight_shape,
                                                            const std::vector<int64_t>& out_grad_shape) {
  return {value_shape, loc_shape, weight_shape};
}

}  // namespace

PD_BUILD_OP(instseg_ms_deform_attn)
    .Inputs({"Value", "SpatialShapes", "Locations", "Weights"})
    .Outputs({"Out"})
    .SetKernelFn(PD_KERNEL(MsDeformAttnForward))
    .SetInferShapeFn(PD_INFER_SHAPE(MsDeformAttnForwardShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(MsDeformAttnForwardDtype));

PD_BUILD_GRAD_OP(instseg_ms_deform_attn)
    .Inputs({"Value", "SpatialShapes", "Locations", "Weights", paddle::Grad("Out")})
    .Outputs({paddle::Grad("Value"), paddle::Grad("Locations"), paddle::Grad("Weights")})
    .SetKernelFn(PD_KERNEL(MsDeformAttnBackward))
    .SetInferShapeFn(PD_INFER_SHAPE(MsDeformAttnBackwardShape));
