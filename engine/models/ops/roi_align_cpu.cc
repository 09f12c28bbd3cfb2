// RoIAlign for CPU float32 as a Paddle custom operator, forward and backward.
//
// It reproduces paddle.vision.ops.roi_align's CPU kernels (phi roi_align / roi_align_grad) up to
// float rounding: the same sample positions, the same treatment of samples outside the map, the same
// clamping, the same averaging, and the quirks where Paddle's backward differs from its forward (the
// backward always clamps the RoI size to >= 1 and places samples with a slightly different
// expression). Where Paddle's kernels misbehave this one does not: an aligned box inverted by more than
// an output bin (negative sample count) raises instead of aborting the process, and int64 boxes_num
// also works in the backward. What changes is the arithmetic layout:
//
//  * A sample's bilinear weight is (weight along y) * (weight along x), and a sample that falls off
//    the map along either axis contributes 0, which is the product of per-axis indicators. So for each
//    RoI and each output bin the samples are summed per axis into a short list of (feature row,
//    weight) and (feature column, weight) taps, once, and reused for every channel.
//  * Forward, per output row: blend the tapped feature rows over the RoI's column span, then take the
//    short column sums for each output column. Backward is the transpose of that.
//  * Channels go in blocks of kLanes; one image's block is copied channel-last into a per-thread
//    buffer ([H][W][kLanes]), so every tap updates kLanes adjacent floats (long, vectorised inner loops
//    even for tiny RoIs) and the block stays in cache while all that image's RoIs are pooled from it.
//  * Threads split the channel blocks, forward and backward. In the backward each thread accumulates
//    its own channels of dX: no atomics, and the result does not depend on the thread count.
//
// The thread count is the OpenMP default of the runtime the library is linked with; roi_align_fast.py
// links it with the Intel OpenMP runtime that Paddle's own kernels use, so paddle's set_num_threads
// applies and both share one thread pool.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "paddle/extension.h"

namespace {

// Taps of one RoI along one axis: for output bin p, the weights of feature indices
// first[p] .. first[p] + (offset[p+1] - offset[p]) - 1 are weight[offset[p]] ...
// lo / hi: the smallest first index and one past the largest index over all bins.
struct AxisTaps {
  std::vector<int> first;
  std::vector<int> offset;
  std::vector<float> weight;
  int lo = 0;
  int hi = 0;
};

struct RoiPlan {
  int grid_points = 0;  // samples per bin (grid_h * grid_w), the divisor of the average
  AxisTaps y;
  AxisTaps x;
};

// One bilinear sample along one axis, Paddle's rules: outside [-1, size] it is dropped; below 0 it
// moves to 0; at or past size - 1 both neighbours are the last index.
struct AxisSample {
  bool valid;
  int low;
  int high;
  float w_low;
  float w_high;
};

inline AxisSample sample_axis(float pos, int size, bool grad_rules) {
  AxisSample s{false, 0, 0, 0.f, 0.f};
  if (pos < -1.0 || pos > size) return s;
  s.valid = true;
  if (pos <= 0) pos = 0;
  s.low = static_cast<int>(pos);
  if (s.low >= size - 1) {
    s.low = s.high = size - 1;
    pos = static_cast<float>(s.low);
  } else {
    s.high = s.low + 1;
  }
  if (grad_rules) {  // backward kernel: fraction above the low index
    const float frac = pos - static_cast<float>(s.low);
    s.w_high = frac;
    s.w_low = 1.f - frac;
  } else {  // forward kernel: distance to the high index
    s.w_low = static_cast<float>(s.high) - pos;
    s.w_high = 1.f - s.w_low;
  }
  return s;
}

// Sample coordinate `i` of bin `p`; the forward and backward kernels write it differently, and
// rounding follows the expression.
inline float sample_position(float start, float bin, int p, int i, int grid, bool grad_rules) {
  const float fi = static_cast<float>(i) + .5f;
  if (grad_rules) return start + static_cast<float>(p) * bin + fi * bin / static_cast<float>(grid);
  return start + bin * (static_cast<float>(p) + fi / static_cast<float>(grid));
}

void build_axis(float start, float extent, int pooled, int grid, int size, bool grad_rules,
                AxisTaps* taps) {
  const float bin = extent / static_cast<float>(pooled);
  taps->first.assign(pooled, 0);
  taps->offset.assign(pooled + 1, 0);
  taps->weight.clear();
  taps->lo = size;
  taps->hi = 0;
  std::vector<AxisSample> samples(std::max(grid, 0));
  for (int p = 0; p < pooled; ++p) {
    int first = size, last = -1;
    for (int i = 0; i < grid; ++i) {
      samples[i] = sample_axis(sample_position(start, bin, p, i, grid, grad_rules), size, grad_rules);
      if (samples[i].valid) {
        first = std::min(first, samples[i].low);
        last = std::max(last, samples[i].high);
      }
    }
    const int base = static_cast<int>(taps->weight.size());
    if (last >= first) {
      taps->weight.resize(base + (last - first + 1), 0.f);
      float* w = taps->weight.data() + base - first;
      for (int i = 0; i < grid; ++i) {
        if (!samples[i].valid) continue;
        w[samples[i].low] += samples[i].w_low;
        w[samples[i].high] += samples[i].w_high;
      }
      taps->first[p] = first;
      taps->lo = std::min(taps->lo, first);
      taps->hi = std::max(taps->hi, last + 1);
    }
    taps->offset[p + 1] = static_cast<int>(taps->weight.size());
  }
  if (taps->hi <= taps->lo) taps->lo = taps->hi = 0;
  for (int p = 0; p < pooled; ++p) {  // bins without taps: keep `first` inside the span anyway
    if (taps->offset[p + 1] == taps->offset[p]) taps->first[p] = taps->lo;
  }
}

// Where each image's RoIs start (RoIs are grouped by image, in order): N + 1 offsets, the last one R.
std::vector<int64_t> roi_offsets(const paddle::Tensor& boxes_num, int64_t num_images, int64_t num_rois) {
  PD_CHECK(boxes_num.numel() == num_images, "roi_align: boxes_num has ", boxes_num.numel(),
           " entries for a batch of ", num_images, " images");
  std::vector<int64_t> counts(num_images);
  if (boxes_num.dtype() == paddle::DataType::INT64) {
    const int64_t* src = boxes_num.data<int64_t>();
    std::copy(src, src + num_images, counts.begin());
  } else {
    PD_CHECK(boxes_num.dtype() == paddle::DataType::INT32, "roi_align: boxes_num must be int32 or int64");
    const int32_t* src = boxes_num.data<int32_t>();
    std::copy(src, src + num_images, counts.begin());
  }
  std::vector<int64_t> offsets(num_images + 1, 0);
  for (int64_t n = 0; n < num_images; ++n) {
    PD_CHECK(counts[n] >= 0, "roi_align: negative count in boxes_num");
    offsets[n + 1] = offsets[n] + counts[n];
  }
  PD_CHECK(offsets[num_images] == num_rois, "roi_align: boxes_num adds up to ", offsets[num_images],
           " but there are ", num_rois, " boxes");
  return offsets;
}

// Taps of every RoI. The forward kernel clamps the RoI size to >= 1 only when not aligned; the
// backward kernel always does.
std::vector<RoiPlan> make_plans(const paddle::Tensor& boxes, int height, int width, int pooled_h,
                                int pooled_w, float spatial_scale, int sampling_ratio, bool aligned,
                                bool grad_rules) {
  const int64_t num_rois = boxes.shape()[0];
  std::vector<RoiPlan> plans(num_rois);
  const float* box = boxes.data<float>();
  const float offset = aligned ? 0.5f : 0.f;
  bool bad_grid = false;
#pragma omp parallel for schedule(static) reduction(|| : bad_grid)
  for (int64_t r = 0; r < num_rois; ++r) {
    const float* b = box + 4 * r;
    const float x0 = b[0] * spatial_scale - offset;
    const float y0 = b[1] * spatial_scale - offset;
    const float x1 = b[2] * spatial_scale - offset;
    const float y1 = b[3] * spatial_scale - offset;
    float roi_w = x1 - x0;
    float roi_h = y1 - y0;
    if (!aligned || grad_rules) {
      roi_w = std::max(roi_w, 1.f);
      roi_h = std::max(roi_h, 1.f);
    }
    const int grid_h = sampling_ratio > 0 ? sampling_ratio
                                          : static_cast<int>(std::ceil(roi_h / static_cast<float>(pooled_h)));
    const int grid_w = sampling_ratio > 0 ? sampling_ratio
                                          : static_cast<int>(std::ceil(roi_w / static_cast<float>(pooled_w)));
    if (grid_h < 0 || grid_w < 0) {
      bad_grid = true;
      continue;
    }
    RoiPlan& plan = plans[r];
    plan.grid_points = grid_h * grid_w;
    build_axis(y0, roi_h, pooled_h, grid_h, height, grad_rules, &plan.y);
    build_axis(x0, roi_w, pooled_w, grid_w, width, grad_rules, &plan.x);
  }
  // Paddle's CPU kernel aborts the process on such boxes (a negative sample count).
  PD_CHECK(!bad_grid, "roi_align: with aligned=True a box is inverted by more than one output bin");
  return plans;
}

int widest_span(const std::vector<RoiPlan>& plans) {
  int span = 1;
  for (const auto& p : plans) span = std::max(span, p.x.hi - p.x.lo);
  return span;
}

// Channels per block (the lanes of the channel-last per-thread buffer). 16 and 32 measured no faster.
constexpr int kLanes = 8;

// The sizes both kernels work with.
struct Dims {
  int64_t images, channels, num_rois, plane, blocks;
  int height, width, bins;
};

Dims check_inputs(const paddle::Tensor& x, const paddle::Tensor& boxes, int pooled_h, int pooled_w) {
  PD_CHECK(x.is_cpu() && boxes.is_cpu(), "roi_align (native): CPU tensors only");
  PD_CHECK(x.dtype() == paddle::DataType::FLOAT32 && boxes.dtype() == paddle::DataType::FLOAT32,
           "roi_align (native): float32 only");
  PD_CHECK(x.shape().size() == 4 && x.shape()[2] > 0 && x.shape()[3] > 0,
           "roi_align: x must be [N, C, H, W] with H, W > 0");
  PD_CHECK(boxes.shape().size() == 2 && boxes.shape()[1] == 4, "roi_align: boxes must be [R, 4]");
  PD_CHECK(pooled_h > 0 && pooled_w > 0, "roi_align: output size must be positive");
  const auto& shape = x.shape();
  Dims d;
  d.images = shape[0];
  d.channels = shape[1];
  d.height = static_cast<int>(shape[2]);
  d.width = static_cast<int>(shape[3]);
  d.num_rois = boxes.shape()[0];
  d.plane = static_cast<int64_t>(d.height) * d.width;
  d.bins = pooled_h * pooled_w;
  d.blocks = (d.channels + kLanes - 1) / kLanes;
  return d;
}

paddle::Tensor contiguous(const paddle::Tensor& t) { return t.is_contiguous() ? t : t.contiguous(); }

// Channels c0 .. c0 + lanes - 1 of image n of x [N, C, H, W] into block [H, W, kLanes].
void gather_block(const float* x, int64_t n, int64_t channels, int64_t plane, int64_t c0, int lanes,
                  float* block) {
  if (lanes < kLanes) std::fill(block, block + plane * kLanes, 0.f);
  for (int j = 0; j < lanes; ++j) {
    const float* src = x + (n * channels + c0 + j) * plane;
    for (int64_t i = 0; i < plane; ++i) block[i * kLanes + j] = src[i];
  }
}

// The inverse: block [H, W, kLanes] into channels c0 .. c0 + lanes - 1 of image n of dx [N, C, H, W].
void scatter_block(const float* block, int64_t n, int64_t channels, int64_t plane, int64_t c0, int lanes,
                   float* dx) {
  for (int j = 0; j < lanes; ++j) {
    float* dst = dx + (n * channels + c0 + j) * plane;
    for (int64_t i = 0; i < plane; ++i) dst[i] = block[i * kLanes + j];
  }
}

std::vector<paddle::Tensor> RoiAlignForward(const paddle::Tensor& x_in, const paddle::Tensor& boxes_in,
                                            const paddle::Tensor& boxes_num, int pooled_h, int pooled_w,
                                            float spatial_scale, int sampling_ratio, bool aligned) {
  const paddle::Tensor x = contiguous(x_in);
  const paddle::Tensor boxes = contiguous(boxes_in);
  const Dims d = check_inputs(x, boxes, pooled_h, pooled_w);
  paddle::Tensor out =
      paddle::empty({d.num_rois, d.channels, pooled_h, pooled_w}, paddle::DataType::FLOAT32, x.place());
  if (d.num_rois == 0 || d.channels == 0) return {out};
  const std::vector<int64_t> first_roi = roi_offsets(boxes_num, d.images, d.num_rois);
  const auto plans = make_plans(boxes, d.height, d.width, pooled_h, pooled_w, spatial_scale,
                                sampling_ratio, aligned, /*grad_rules=*/false);
  const int span = widest_span(plans);
  const float* src = x.data<float>();
  float* dst = out.data<float>();

#pragma omp parallel
  {
    std::vector<float> block(d.plane * kLanes);
    std::vector<float> row(static_cast<size_t>(span) * kLanes);
    std::vector<float> pooled(static_cast<size_t>(d.bins) * kLanes);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < d.blocks; ++b) {
      const int64_t c0 = b * kLanes;
      const int lanes = static_cast<int>(std::min<int64_t>(kLanes, d.channels - c0));
      for (int64_t n = 0; n < d.images; ++n) {
        if (first_roi[n + 1] == first_roi[n]) continue;
        gather_block(src, n, d.channels, d.plane, c0, lanes, block.data());
        for (int64_t r = first_roi[n]; r < first_roi[n + 1]; ++r) {
          const RoiPlan& plan = plans[r];
          // Paddle divides by the sample count through its reciprocal (inf for an empty grid: NaN out).
          const float inv_count = static_cast<float>(1.0 / plan.grid_points);
          const int lo = plan.x.lo;
          const int len = (plan.x.hi - lo) * kLanes;
          const float* feat = block.data() + lo * kLanes;
          float* rw = row.data();
          for (int ph = 0; ph < pooled_h; ++ph) {
            // Blend the bin's tapped feature rows over the RoI's columns, all lanes at once.
            std::fill(rw, rw + len, 0.f);
            const int y_first = plan.y.first[ph];
            const int y_taps = plan.y.offset[ph + 1] - plan.y.offset[ph];
            const float* wy = plan.y.weight.data() + plan.y.offset[ph];
            for (int t = 0; t < y_taps; ++t) {
              const float w = wy[t];
              const float* line = feat + static_cast<int64_t>(y_first + t) * d.width * kLanes;
              for (int k = 0; k < len; ++k) rw[k] += w * line[k];
            }
            // Then each output column: its tapped columns of that blend.
            for (int pw = 0; pw < pooled_w; ++pw) {
              float acc[kLanes] = {};
              const int x_taps = plan.x.offset[pw + 1] - plan.x.offset[pw];
              const float* wx = plan.x.weight.data() + plan.x.offset[pw];
              const float* seg = rw + (plan.x.first[pw] - lo) * kLanes;
              for (int t = 0; t < x_taps; ++t) {
                const float w = wx[t];
                for (int j = 0; j < kLanes; ++j) acc[j] += w * seg[t * kLanes + j];
              }
              float* o = pooled.data() + (ph * pooled_w + pw) * kLanes;
              for (int j = 0; j < kLanes; ++j) o[j] = acc[j] * inv_count;
            }
          }
          float* o = dst + (r * d.channels + c0) * d.bins;
          for (int j = 0; j < lanes; ++j)
            for (int i = 0; i < d.bins; ++i) o[j * d.bins + i] = pooled[i * kLanes + j];
        }
      }
    }
  }
  return {out};
}

std::vector<paddle::Tensor> RoiAlignBackward(const paddle::Tensor& x, const paddle::Tensor& boxes_in,
                                             const paddle::Tensor& boxes_num,
                                             const paddle::Tensor& out_grad_in, int pooled_h, int pooled_w,
                                             float spatial_scale, int sampling_ratio, bool aligned) {
  const paddle::Tensor boxes = contiguous(boxes_in);
  const paddle::Tensor out_grad = contiguous(out_grad_in);
  const Dims d = check_inputs(x, boxes, pooled_h, pooled_w);
  paddle::Tensor dx = paddle::empty(x.shape(), paddle::DataType::FLOAT32, x.place());
  float* gx = dx.data<float>();
  if (d.num_rois == 0 || d.channels == 0) {
    std::memset(gx, 0, sizeof(float) * d.images * d.channels * d.plane);
    return {dx};
  }
  const std::vector<int64_t> first_roi = roi_offsets(boxes_num, d.images, d.num_rois);
  const auto plans = make_plans(boxes, d.height, d.width, pooled_h, pooled_w, spatial_scale,
                                sampling_ratio, aligned, /*grad_rules=*/true);
  const int span = widest_span(plans);
  const float* go = out_grad.data<float>();

  // Each thread owns whole channel blocks: it accumulates their gradient in its own buffer and writes
  // every element of those channels of dX once.
#pragma omp parallel
  {
    std::vector<float> block(d.plane * kLanes);
    std::vector<float> row(static_cast<size_t>(span) * kLanes);
    std::vector<float> upstream(static_cast<size_t>(d.bins) * kLanes, 0.f);  // lanes past C stay 0
#pragma omp for schedule(static)
    for (int64_t b = 0; b < d.blocks; ++b) {
      const int64_t c0 = b * kLanes;
      const int lanes = static_cast<int>(std::min<int64_t>(kLanes, d.channels - c0));
      for (int64_t n = 0; n < d.images; ++n) {
        std::fill(block.begin(), block.end(), 0.f);
        for (int64_t r = first_roi[n]; r < first_roi[n + 1]; ++r) {
          const RoiPlan& plan = plans[r];
          // Paddle divides each sample's share by the sample count; here each bin's gradient, once.
          const float inv_count = 1.f / static_cast<float>(plan.grid_points);
          const float* g = go + (r * d.channels + c0) * d.bins;
          for (int j = 0; j < lanes; ++j)
            for (int i = 0; i < d.bins; ++i) upstream[i * kLanes + j] = g[j * d.bins + i] * inv_count;
          const int lo = plan.x.lo;
          const int len = (plan.x.hi - lo) * kLanes;
          float* grad = block.data() + lo * kLanes;
          float* rw = row.data();
          for (int ph = 0; ph < pooled_h; ++ph) {
            const int y_taps = plan.y.offset[ph + 1] - plan.y.offset[ph];
            if (y_taps == 0) continue;
            // Spread each output column's gradient over its tapped columns ...
            std::fill(rw, rw + len, 0.f);
            for (int pw = 0; pw < pooled_w; ++pw) {
              const float* up = upstream.data() + (ph * pooled_w + pw) * kLanes;
              const int x_taps = plan.x.offset[pw + 1] - plan.x.offset[pw];
              const float* wx = plan.x.weight.data() + plan.x.offset[pw];
              float* seg = rw + (plan.x.first[pw] - lo) * kLanes;
              for (int t = 0; t < x_taps; ++t) {
                const float w = wx[t];
                for (int j = 0; j < kLanes; ++j) seg[t * kLanes + j] += w * up[j];
              }
            }
            // ... and that row over the bin's tapped feature rows.
            const int y_first = plan.y.first[ph];
            const float* wy = plan.y.weight.data() + plan.y.offset[ph];
            for (int t = 0; t < y_taps; ++t) {
              const float w = wy[t];
              float* line = grad + static_cast<int64_t>(y_first + t) * d.width * kLanes;
              for (int k = 0; k < len; ++k) line[k] += w * rw[k];
            }
          }
        }
        scatter_block(block.data(), n, d.channels, d.plane, c0, lanes, gx);
      }
    }
  }
  return {dx};
}

std::vector<std::vector<int64_t>> RoiAlignForwardShape(const std::vector<int64_t>& x_shape,
                                                       const std::vector<int64_t>& boxes_shape,
                                                       const std::vector<int64_t>& boxes_num_shape,
                                                       int pooled_h, int pooled_w, float spatial_scale,
                                                       int sampling_ratio, bool aligned) {
  return {{boxes_shape[0], x_shape[1], pooled_h, pooled_w}};
}

std::vector<paddle::DataType> RoiAlignForwardDtype(const paddle::DataType& x_dtype,
                                                   const paddle::DataType& boxes_dtype,
                                                   const paddle::DataType& boxes_num_dtype) {
  return {x_dtype};
}

std::vector<std::vector<int64_t>> RoiAlignBackwardShape(const std::vector<int64_t>& x_shape,
                                                        const std::vector<int64_t>& boxes_shape,
                                                        const std::vector<int64_t>& boxes_num_shape,
                                                        const std::vector<int64_t>& out_grad_shape,
                                                        int pooled_h, int pooled_w, float spatial_scale,
                                                        int sampling_ratio, bool aligned) {
  return {x_shape};
}

}  // namespace

PD_BUILD_OP(instseg_roi_align)
    .Inputs({"X", "Boxes", "BoxesNum"})
    .Outputs({"Out"})
    .Attrs({"pooled_height: int", "pooled_width: int", "spatial_scale: float", "sampling_ratio: int",
            "aligned: bool"})
    .SetKernelFn(PD_KERNEL(RoiAlignForward))
    .SetInferShapeFn(PD_INFER_SHAPE(RoiAlignForwardShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(RoiAlignForwardDtype));

PD_BUILD_GRAD_OP(instseg_roi_align)
    .Inputs({"X", "Boxes", "BoxesNum", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X")})
    .Attrs({"pooled_height: int", "pooled_width: int", "spatial_scale: float", "sampling_ratio: int",
            "aligned: bool"})
    .SetKernelFn(PD_KERNEL(RoiAlignBackward))
    .SetInferShapeFn(PD_INFER_SHAPE(RoiAlignBackwardShape));
