// CPU causal depthwise conv1d with an optional fused SiLU, forward and backward, with causal-conv1d's
// semantics: out[t, c] = act(bias[c] + sum_k w[c, k] * x[t - (W - 1) + k, c]), zeros before the start.
//
// Token-major layout (the layout a Mamba layer's in_proj produces; causal-conv1d's "channel-last" input):
//   x, dout: (batch, L, dim) with the channel dim contiguous, any token/batch stride
//   weight: (dim, W)  bias: (dim,) or empty.  Outputs are contiguous (batch, L, dim).
// Work is split over (batch, blocks of tokens) in the forward and over columns of channels in the backward (so
// each weight gradient has one writer); the vectors run over contiguous channels.
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

struct Conv {
  const float *x, *w, *bias;
  int64_t batch, L, dim, W, sx_b, sx_t;
  int64_t sdx_b = 0, sdx_t = 0;  // the backward's dx: (batch, L, dim) with these strides
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
// and writes row L - 1 - t. Written on `vfloat` (simd_math.h): each vector of channels is accumulated in a
// register over the W taps, activated with the inlined exp and stored once (the output is fresh memory:
// every extra pass over it costs page faults and bandwidth); a scalar loop takes the last channels.
void preact(const Conv& cv, const float* wt, int64_t b, int64_t t0, int64_t t1, int64_t c0, int64_t c1,
            float* out, int64_t out_t0, int64_t ld, bool silu = false) {
  using mambabench::kVec;
  using mambabench::vfloat;
  using mambabench::vload;
  using mambabench::vstore;
  const float* xs = cv.x + b * cv.sx_b;
  auto at = [&](int64_t t) { return cv.reverse ? cv.L - 1 - t : t; };
  const float* rows[kMaxWidth];
  for (int64_t t = t0; t < t1; ++t) {
    float* o = out + (at(t) - out_t0) * ld - c0;
    const int64_t kfirst = std::max<int64_t>(0, (cv.W - 1) - t);  // taps before the start are zeros
    for (int64_t k = kfirst; k < cv.W; ++k) rows[k] = xs + at(t - (cv.W - 1) + k) * cv.sx_t;
    int64_t c = c0;
    for (; c + kVec <= c1; c += kVec) {
      vfloat acc = cv.bias ? vload(cv.bias + c) : vfloat{};
      for (int64_t k = kfirst; k < cv.W; ++k) acc += vload(wt + k * cv.dim + c) * vload(rows[k] + c);
      vstore(o + c, silu ? acc * mambabench::vsigmoid(acc) : acc);
    }
    for (; c < c1; ++c) {
      float acc = cv.bias ? cv.bias[c] : 0.f;
      for (int64_t k = kfirst; k < cv.W; ++k) acc += wt[k * cv.dim + c] * rows[k][c];
      o[c] = silu ? acc * sigmoid(acc) : acc;
    }
  }
}

std::vector<float> transposed_weight(const Conv& cv) {  // (W, dim): contiguous over channels
  std::vector<float> wt(cv.W * cv.dim);
  for (int64_t c = 0; c < cv.dim; ++c)
    for (int64_t k = 0; k < cv.W; ++k) wt[k * cv.dim + c] = cv.w[c * cv.W + k];
  return wt;
}

// ---- Backward: one column of channels at a time ----
// A column is kVec channels (one vector) or, past the last full vector, one channel (a float): everything
// below is written once for both. The column walks every sequence from its end; the pre-activation of token t
// is recomputed from the W inputs it read, the gradients of the W - 1 later tokens that dx[t] needs ride along
// in registers, and dweight and dbias accumulate in registers over the whole batch (one writer per column),
// so each element of dout and x is read and each of dx written once, with no pass over a buffer.
inline mambabench::vfloat load(const float* p, mambabench::vfloat) { return mambabench::vload(p); }
inline float load(const float* p, float) { return *p; }
inline void store(float* p, mambabench::vfloat v) { mambabench::vstore(p, v); }
inline void store(float* p, float v) { *p = v; }
inline mambabench::vfloat sigmoid_of(mambabench::vfloat v) { return mambabench::vsigmoid(v); }
inline float sigmoid_of(float v) { return sigmoid(v); }

// NW > 0 fixes the width at compile time (the usual 4, 3, 2), NW == 0 reads it from cv.W.
template <class V, int NW>
void backward_column(const Conv& cv, const float* wt, const float* dout, bool silu, int64_t c, float* dx,
                     float* dwt, float* db) {
  const int64_t W = NW > 0 ? NW : cv.W;
  V w[kMaxWidth], dw[kMaxWidth], dbias{}, later[kMaxWidth];  // later[i]: gradient at token t + 1 + i
  for (int64_t k = 0; k < W; ++k) {
    w[k] = load(wt + k * cv.dim + c, V{});
    dw[k] = V{};
  }
  const V bias = cv.bias ? load(cv.bias + c, V{}) : V{};
  // with cv.reverse, step t is token L - 1 - t: x, dout and dx are walked from their last row, strides negated
  const int64_t first = cv.reverse ? cv.L - 1 : 0, dir = cv.reverse ? -1 : 1;
  const int64_t sx = dir * cv.sx_t, sg = dir * cv.dim, sdx = dir * cv.sdx_t;
  for (int64_t b = 0; b < cv.batch; ++b) {
    const float* xs = cv.x + b * cv.sx_b + first * cv.sx_t + c;
    const float* gs = dout + b * cv.L * cv.dim + first * cv.dim + c;
    float* dxs = dx + b * cv.sdx_b + first * cv.sdx_t + c;
    for (int64_t i = 0; i + 1 < W; ++i) later[i] = V{};  // zeros past the end
    for (int64_t t = cv.L - 1; t >= 0; --t) {
      const int64_t kfirst = std::max<int64_t>(0, (W - 1) - t);  // taps before the start are zeros
      V xk[kMaxWidth], g = load(gs + t * sg, V{});
      for (int64_t k = kfirst; k < W; ++k) xk[k] = load(xs + (t - (W - 1) + k) * sx, V{});
      if (silu) {  // through the SiLU at the recomputed pre-activation
        V pre = bias;
        for (int64_t k = kfirst; k < W; ++k) pre += w[k] * xk[k];
        const V sg = sigmoid_of(pre);
        g = g * sg * (1.f + pre * (1.f - sg));
      }
      dbias += g;
      for (int64_t k = kfirst; k < W; ++k) dw[k] += g * xk[k];
      V acc = w[W - 1] * g;  // dx[t] = sum_k w[k] * g[t + (W - 1) - k]
      for (int64_t k = 0; k + 1 < W; ++k) acc += w[k] * later[W - 2 - k];
      store(dxs + t * sdx, acc);
      for (int64_t i = W - 2; i > 0; --i) later[i] = later[i - 1];
      if (W > 1) later[0] = g;
    }
  }
  for (int64_t k = 0; k < W; ++k) store(dwt + k * cv.dim + c, dw[k]);
  store(db + c, dbias);
}

template <class V>
void backward_column_any_width(const Conv& cv, const float* wt, const float* dout, bool silu, int64_t c,
                               float* dx, float* dwt, float* db) {
  switch (cv.W) {
    case 4: return backward_column<V, 4>(cv, wt, dout, silu, c, dx, dwt, db);
    case 3: return backward_column<V, 3>(cv, wt, dout, silu, c, dx, dwt, db);
    case 2: return backward_column<V, 2>(cv, wt, dout, silu, c, dx, dwt, db);
    default: return backward_column<V, 0>(cv, wt, dout, silu, c, dx, dwt, db);
  }
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

// Returns dx (batch, L, dim), dweight (dim, W), dbias (dim,) (empty when there is no bias). dx is written into
// dx_out when it is given (not empty): (batch, L, dim) with contiguous channels and any row stride, e.g. the
// x half of a Mamba mixer's (batch, L, 2 dim) input gradient, so no concatenation follows. `reverse`: the
// gradients of the forward's reverse conv (no flipped copies of dout, x and dx).
std::vector<at::Tensor> causal_conv1d_bwd(at::Tensor dout, at::Tensor x, at::Tensor weight,
                                             at::Tensor bias, bool silu, at::Tensor dx_out, bool reverse) {
  using mambabench::kVec;
  Conv cv = make_conv(x, weight, bias);
  cv.reverse = reverse;
  TORCH_CHECK(dout.is_contiguous(), "causal_conv1d_bwd: dout must be contiguous (batch, L, dim)");
  auto dx = dx_out.numel() ? dx_out : at::empty({cv.batch, cv.L, cv.dim}, x.options());
  TORCH_CHECK(dx.dim() == 3 && dx.size(0) == cv.batch && dx.size(1) == cv.L && dx.size(2) == cv.dim &&
                  dx.stride(2) == 1 && dx.scalar_type() == at::kFloat,
              "causal_conv1d_bwd: dx_out must be float32 (batch, L, dim) with contiguous channels");
  cv.sdx_b = dx.stride(0), cv.sdx_t = dx.stride(1);
  const std::vector<float> wt = transposed_weight(cv);
  std::vector<float> dwt(cv.W * cv.dim, 0.f), db(cv.dim, 0.f);
  const float* go = dout.data_ptr<float>();
  float* dxp = dx.data_ptr<float>();
  const int64_t vectors = cv.dim / kVec, columns = vectors + cv.dim % kVec;  // full vectors, then single channels
  at::parallel_for(0, columns, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t col = lo; col < hi; ++col) {
      if (col < vectors)
        backward_column_any_width<mambabench::vfloat>(cv, wt.data(), go, silu, col * kVec, dxp, dwt.data(), db.data());
      else
        backward_column_any_width<float>(cv, wt.data(), go, silu, vectors * kVec + (col - vectors), dxp, dwt.data(),
                                         db.data());
    }
  });
  auto dweight = at::empty_like(weight);
  float* dwp = dweight.data_ptr<float>();
  for (int64_t c = 0; c < cv.dim; ++c)
    for (int64_t k = 0; k < cv.W; ++k) dwp[c * cv.W + k] = dwt[k * cv.dim + c];
  auto dbias = cv.bias ? at::from_blob(db.data(), {cv.dim}, x.options()).clone() : at::empty({0}, x.options());
  return {dx, dweight, dbias};
}
