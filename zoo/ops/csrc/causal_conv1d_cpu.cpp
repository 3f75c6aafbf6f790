// CPU causal depthwise conv1d with an optional fused SiLU, forward and backward, with causal-conv1d's
// semantics: out[t, c] = act(bias[c] + sum_k w[c, k] * x[t - (W - 1) + k, c]), zeros before the start.
//
// Token-major layout (the layout a Mamba layer's in_proj produces; causal-conv1d's "channel-last" input):
//   x, dout: (batch, L, dim) with the channel dim contiguous, any token/batch stride
//   weight: (dim, W)  bias: (dim,) or empty.  Outputs are contiguous (batch, L, dim).
// Work is split over (batch, blocks of tokens) in the forward and over channel blocks in the backward (so
// each weight gradient has one writer); the inner loops run over contiguous channels.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <ATen/ops/from_blob.h>
#include <ATen/Parallel.h>

#include <vector>

#include "simd_math.h"

namespace {

using mambabench::sigmoid;

constexpr int64_t kMaxWidth = 8;
constexpr int64_t kTokenBlock = 256;
constexpr int64_t kChannelBlock = 64;

struct Conv {
  const float *x, *w, *bias;
  int64_t batch, L, dim, W, sx_b, sx_t;
  bool reverse = false;  // run over the sequence from its end (an anti-causal conv, outputs in token order)
};

Conv make_conv(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) {
  TORCH_CHECK(x.dim() == 3 && x.stride(2) == 1, "causal_conv1d: x must be (batch, L, dim), channels contiguous");
  TORCH_CHECK(w.size(1) <= kMaxWidth, "causal_conv1d: width must be <= ", kMaxWidth);
  return Conv{x.data_ptr<float>(), w.data_ptr<float>(), bias.numel() ? bias.data_ptr<float>() : nullptr,
              x.size(0), x.size(1), x.size(2), w.size(1), x.stride(0), x.stride(1)};
}

// Output of processed tokens [t0, t1) and channels [c0, c1) of sequence b: the pre-activation, or with `silu`
// the activation, of token t into row (t - out_t0) of out (row stride ld); with cv.reverse, token t reads
// and writes row L - 1 - t. Each 64-channel strip is accumulated in registers and
// written once (the output is fresh memory: every extra pass over it costs page faults and bandwidth).
constexpr int64_t kStrip = 64;

void preact(const Conv& cv, const float* wt, int64_t b, int64_t t0, int64_t t1, int64_t c0, int64_t c1,
            float* out, int64_t out_t0, int64_t ld, bool silu = false) {
  const float* xs = cv.x + b * cv.sx_b;
  auto at = [&](int64_t t) { return cv.reverse ? cv.L - 1 - t : t; };
  for (int64_t t = t0; t < t1; ++t) {
    float* o = out + (at(t) - out_t0) * ld;
    const int64_t kfirst = std::max<int64_t>(0, (cv.W - 1) - t);  // taps before the start are zeros
    for (int64_t c = c0; c < c1; c += kStrip) {
      const int64_t n = std::min(kStrip, c1 - c);
      alignas(64) float acc[kStrip];
      if (cv.bias) {
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) acc[i] = cv.bias[c + i];
      } else {
        std::fill(acc, acc + n, 0.f);
      }
      for (int64_t k = kfirst; k < cv.W; ++k) {
        const float* xr = xs + at(t - (cv.W - 1) + k) * cv.sx_t + c;
        const float* wk = wt + k * cv.dim + c;
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) acc[i] += wk[i] * xr[i];
      }
      float* oc = o + (c - c0);
      if (silu) {
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) oc[i] = acc[i] * sigmoid(acc[i]);
      } else {
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) oc[i] = acc[i];
      }
    }
  }
}

std::vector<float> transposed_weight(const Conv& cv) {  // (W, dim): contiguous over channels
  std::vector<float> wt(cv.W * cv.dim);
  for (int64_t c = 0; c < cv.dim; ++c)
    for (int64_t k = 0; k < cv.W; ++k) wt[k * cv.dim + c] = cv.w[c * cv.W + k];
  return wt;
}

}  // namespace

at::Tensor causal_conv1d_fwd(at::Tensor x, at::Tensor weight, at::Tensor bias, bool silu, bool reverse) {
  Conv cv = make_conv(x, weight, bias);
  cv.reverse = reverse;
  const std::vector<float> wt = transposed_weight(cv);
  auto out = at::empty({cv.batch, cv.L, cv.dim}, x.options());
  float* o = out.data_ptr<float>();
  const int64_t blocks = (cv.L + kTokenBlock - 1) / kTokenBlock;
  at::parallel_for(0, cv.batch * blocks, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t item = lo; item < hi; ++item) {
      const int64_t b = item / blocks, t0 = (item % blocks) * kTokenBlock, t1 = std::min(cv.L, t0 + kTokenBlock);
      preact(cv, wt.data(), b, t0, t1, 0, cv.dim, o + b * cv.L * cv.dim, 0, cv.dim, silu);
    }
  });
  return out;
}

// Returns dx (batch, L, dim), dweight (dim, W), dbias (dim,) (empty when there is no bias).
std::vector<at::Tensor> causal_conv1d_bwd(at::Tensor dout, at::Tensor x, at::Tensor weight,
                                             at::Tensor bias, bool silu) {
  const Conv cv = make_conv(x, weight, bias);
  TORCH_CHECK(dout.is_contiguous(), "causal_conv1d_bwd: dout must be contiguous (batch, L, dim)");
  const std::vector<float> wt = transposed_weight(cv);
  auto dx = at::empty({cv.batch, cv.L, cv.dim}, x.options());
  std::vector<float> dwt(cv.W * cv.dim, 0.f), db(cv.dim, 0.f);
  const float* go = dout.data_ptr<float>();
  float* dxp = dx.data_ptr<float>();
  const int64_t cblocks = (cv.dim + kChannelBlock - 1) / kChannelBlock;
  at::parallel_for(0, cblocks, 1, [&](int64_t lo, int64_t hi) {
    std::vector<float> g(kTokenBlock * kChannelBlock), pre(kTokenBlock * kChannelBlock);
    for (int64_t cb = lo; cb < hi; ++cb) {
      const int64_t c0 = cb * kChannelBlock, c1 = std::min(cv.dim, c0 + kChannelBlock), nc = c1 - c0;
      for (int64_t b = 0; b < cv.batch; ++b) {
        const float* xs = cv.x + b * cv.sx_b;
        // Walk token blocks from the end: dx[t] needs g[t .. t + W - 1], and the W - 1 rows of g past
        // the block are kept from the previous (later) block.
        std::vector<float> carry((kMaxWidth - 1) * kChannelBlock, 0.f);
        const int64_t blocks = (cv.L + kTokenBlock - 1) / kTokenBlock;
        for (int64_t blk = blocks - 1; blk >= 0; --blk) {
          const int64_t t0 = blk * kTokenBlock, t1 = std::min(cv.L, t0 + kTokenBlock), nt = t1 - t0;
          const float* gob = go + (b * cv.L) * cv.dim;
          if (silu) {
            preact(cv, wt.data(), b, t0, t1, c0, c1, pre.data(), t0, nc);
            for (int64_t t = 0; t < nt; ++t) {
              const float* gr = gob + (t0 + t) * cv.dim + c0;
              float* gt = g.data() + t * nc;
              const float* pr = pre.data() + t * nc;
#pragma omp simd
              for (int64_t c = 0; c < nc; ++c) {
                const float sg = sigmoid(pr[c]);
                gt[c] = gr[c] * sg * (1.f + pr[c] * (1.f - sg));
              }
            }
          } else {
            for (int64_t t = 0; t < nt; ++t) std::copy(gob + (t0 + t) * cv.dim + c0, gob + (t0 + t) * cv.dim + c1,
                                                       g.data() + t * nc);
          }
          for (int64_t t = 0; t < nt; ++t) {
            const float* gt = g.data() + t * nc;
            const float* xcur = xs + (t0 + t) * cv.sx_t;
#pragma omp simd
            for (int64_t c = 0; c < nc; ++c) db[c0 + c] += gt[c];
            for (int64_t k = 0; k < cv.W; ++k) {  // dw[k] += g[t] * x[t - (W - 1) + k]
              const int64_t src = t0 + t - (cv.W - 1) + k;
              if (src < 0) continue;
              const float* xr = xs + src * cv.sx_t + c0;
              float* dw = dwt.data() + k * cv.dim + c0;
#pragma omp simd
              for (int64_t c = 0; c < nc; ++c) dw[c] += gt[c] * xr[c];
            }
            (void)xcur;
            // dx[t] = sum_k w[k] * g[t + (W - 1) - k]
            float* dxr = dxp + (b * cv.L + t0 + t) * cv.dim + c0;
            std::fill(dxr, dxr + nc, 0.f);
            for (int64_t k = 0; k < cv.W; ++k) {
              const int64_t j = t + (cv.W - 1) - k;  // row of g, relative to t0
              if (t0 + j >= cv.L) continue;
              const float* gj = j < nt ? g.data() + j * nc : carry.data() + (j - nt) * kChannelBlock;
              const float* wk = wt.data() + k * cv.dim + c0;
#pragma omp simd
              for (int64_t c = 0; c < nc; ++c) dxr[c] += wk[c] * gj[c];
            }
          }
          for (int64_t r = 0; r < cv.W - 1 && r < nt; ++r)  // first W-1 rows of g feed the block before
            std::copy(g.data() + r * nc, g.data() + (r + 1) * nc, carry.data() + r * kChannelBlock);
        }
      }
    }
  });
  auto dweight = at::empty_like(weight);
  float* dwp = dweight.data_ptr<float>();
  for (int64_t c = 0; c < cv.dim; ++c)
    for (int64_t k = 0; k < cv.W; ++k) dwp[c * cv.W + k] = dwt[k * cv.dim + c];
  auto dbias = cv.bias ? at::from_blob(db.data(), {cv.dim}, x.options()).clone() : at::empty({0}, x.options());
  return {dx, dweight, dbias};
}
