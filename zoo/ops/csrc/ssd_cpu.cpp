// CPU forward of the Mamba-2 SSD scan (state-space duality, Dao & Gu 2024, Sec. 6), with the semantics of
// mamba_ssm's mamba_chunk_scan_combined (see zoo/ops/ssd.py).
//
// Layout (token-major, as the in_proj/conv output of a Mamba-2 layer already is; no copies needed):
//   x : (batch, L, H, P)   last two dims contiguous, any token/batch stride
//   dt: (batch, L, H)      last dim contiguous, any token/batch stride (raw: bias and softplus applied here)
//   A : (H,)  B, C: (batch, L, G, N) last two dims contiguous  D: (H, P) or empty  z: like x or empty
//   dt_bias: (H,) or empty.  Returns y: (batch, L, H, P) contiguous float32.
//
// reverse = true scans the sequence from its end (the output stays in the input's token order): the
// backward direction of a bidirectional layer without flipped copies.
//
// Per chunk of T tokens and group g (head h in group g = h / (H/G)), with a = cumsum(dt * A):
//   y_t  = exp(a_t) C_t . S  +  sum_{s<=t} (C_t . B_s) exp(a_t - a_s) dt_s x_s  +  D x_t
//   S   <- exp(a_end) S + sum_s B_s (exp(a_end - a_s) dt_s x_s)^T          (S: N x (heads of g * P))
// The two state terms are GEMMs over all heads of the group at once (N = 256, H*P = 2304 for T2MD), the
// intra-chunk term one small GEMM per head; everything else is a pass over a chunk that stays in cache.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <ATen/ops/from_blob.h>
#include <ATen/Parallel.h>
#include <ATen/ops/mm.h>

#include <cmath>
#include <vector>

#include "simd_math.h"

namespace {

using mambabench::fast_exp;
using mambabench::sigmoid;
using mambabench::softplus;

constexpr int64_t kChunk = 64;  // measured fastest on CPU among 32/64/128 (T2MD shapes, one thread)

// The Fortran BLAS that torch links (MKL in the x86 wheels, OpenBLAS elsewhere). Weak: a torch build that
// does not export it takes the at::mm path below instead.
extern "C" void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                       const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                       const float* beta, float* c, const int* ldc) __attribute__((weak));

// Row-major C[m x n] = op(A) op(B) + beta * C (op = transpose when the flag is set, beta 0 or 1); the
// column-major BLAS sees the transposed problem C^T = op(B)^T op(A)^T.
void gemm_rm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
             const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (sgemm_) {
    const char ta = trans_a ? 'T' : 'N', tb = trans_b ? 'T' : 'N';
    const int mi = m, ni = n, ki = k, la = lda, lb = ldb, lc = ldc;
    const float one = 1.f;
    sgemm_(&tb, &ta, &ni, &mi, &ki, &one, b, &lb, a, &la, &beta, c, &lc);
    return;
  }
  const auto opts = at::TensorOptions().dtype(at::kFloat);
  auto view = [&](const float* p, int64_t rows, int64_t cols, int64_t ld, bool trans) {
    auto t = at::from_blob(const_cast<float*>(p), {trans ? cols : rows, trans ? rows : cols}, {ld, 1}, opts);
    return trans ? t.t() : t;
  };
  auto out = at::from_blob(c, {m, n}, {ldc, 1}, opts);
  auto prod = at::mm(view(a, m, k, lda, trans_a), view(b, k, n, ldb, trans_b));
  if (beta == 0.f)
    out.copy_(prod);
  else
    out.add_(prod);
}

struct Ssd {
  const float *x, *dt, *A, *B, *C, *D, *z, *bias;
  int64_t L, H, P, G, N;
  int64_t sx_b, sx_t, sdt_b, sdt_t, sB_b, sB_t, sC_b, sC_t, sz_b, sz_t;
  bool softplus, reverse;
  // Fused mode (mamba_split_conv1d_scan_combined's layout): x, B, C are computed chunk by chunk as
  // silu(causal depthwise conv of the raw xBC rows), and z gates a grouped RMSNorm of the output instead of
  // multiplying it: no conv output and no un-normed y are ever written to memory.
  const float *xbc = nullptr, *conv_wt = nullptr, *conv_b = nullptr, *norm_w = nullptr;
  int64_t conv_dim = 0, W = 0, sxbc_b = 0, sxbc_t = 0, norm_group = 0;
  float eps = 0.f;
};

void forward_sequence(const Ssd& s, int64_t b, float* y_seq) {
  const int64_t H = s.H, P = s.P, N = s.N, G = s.G, HP = H * P, hg = H / G, hgP = hg * P, T = kChunk;
  const float* x_seq = s.x + b * s.sx_b;
  const float* dt_seq = s.dt + b * s.sdt_b;
  const float* B_seq = s.B + b * s.sB_b;
  const float* C_seq = s.C + b * s.sC_b;
  std::vector<float> state(G * N * hgP, 0.f);                  // per group: N x (hg * P)
  std::vector<float> dte(H * T), acum(H * T);                   // head-major: [h][t]
  std::vector<float> cb(T * T), mix(T * T), xw(T * HP);
  // reverse: the chunk's rows are copied, in reverse order, into contiguous buffers (BLAS takes no negative
  // leading dimension) and its output rows written back reversed; no flipped copy of whole tensors
  std::vector<float> xbuf, bbuf, cbuf, ybuf;
  const bool fused = s.xbc != nullptr;
  if (s.reverse || fused) ybuf.resize(T * HP);
  if (fused)
    xbuf.resize(T * s.conv_dim);
  else if (s.reverse)
    xbuf.resize(T * HP), bbuf.resize(T * G * N), cbuf.resize(T * G * N);
  for (int64_t c0 = 0; c0 < s.L; c0 += T) {
    const int64_t Tc = std::min(T, s.L - c0);
    // row of processed token t (0 <= t < Tc) in the input tensors
    auto src_row = [&](int64_t t) { return s.reverse ? s.L - 1 - (c0 + t) : c0 + t; };
    const float *xc = x_seq + c0 * s.sx_t, *Cc = C_seq + c0 * s.sC_t, *Bc = B_seq + c0 * s.sB_t;
    int64_t x_ld = s.sx_t, C_ld = s.sC_t, B_ld = s.sB_t;
    float* yc = y_seq + c0 * HP;
    if (fused) {
      // conv + SiLU of the chunk's rows (tokens before the start are zeros), in processed order
      const float* raw = s.xbc + b * s.sxbc_b;
      const int64_t cd = s.conv_dim;
      for (int64_t t = 0; t < Tc; ++t) {
        float* o = xbuf.data() + t * cd;
        if (s.conv_b)
          std::copy_n(s.conv_b, cd, o);
        else
          std::fill_n(o, cd, 0.f);
        for (int64_t k = 0; k < s.W; ++k) {
          const int64_t q = c0 + t - (s.W - 1) + k;  // processed index of the tap
          if (q < 0) continue;
          const float* xr = raw + (s.reverse ? s.L - 1 - q : q) * s.sxbc_t;
          const float* wk = s.conv_wt + k * cd;
#pragma omp simd
          for (int64_t c = 0; c < cd; ++c) o[c] += wk[c] * xr[c];
        }
#pragma omp simd
        for (int64_t c = 0; c < cd; ++c) o[c] = o[c] * sigmoid(o[c]);
      }
      xc = xbuf.data(), Bc = xbuf.data() + HP, Cc = xbuf.data() + HP + G * N, yc = ybuf.data();
      x_ld = B_ld = C_ld = cd;
    } else if (s.reverse) {
      for (int64_t t = 0; t < Tc; ++t) {
        std::copy_n(x_seq + src_row(t) * s.sx_t, HP, xbuf.data() + t * HP);
        std::copy_n(B_seq + src_row(t) * s.sB_t, G * N, bbuf.data() + t * G * N);
        std::copy_n(C_seq + src_row(t) * s.sC_t, G * N, cbuf.data() + t * G * N);
      }
      xc = xbuf.data(), Bc = bbuf.data(), Cc = cbuf.data(), yc = ybuf.data();
      x_ld = HP, B_ld = G * N, C_ld = G * N;
    }
    // effective dt and cumulative log-decay, head-major so the loops below run over contiguous time
    for (int64_t h = 0; h < H; ++h) {
      const float bias = s.bias ? s.bias[h] : 0.f, a = s.A[h];
      float run = 0.f;
      for (int64_t t = 0; t < Tc; ++t) {
        float v = dt_seq[src_row(t) * s.sdt_t + h] + bias;
        v = s.softplus ? softplus(v) : v;
        dte[h * T + t] = v;
        run += v * a;
        acum[h * T + t] = run;
      }
    }
    for (int64_t g = 0; g < G; ++g) {
      const float* Cg = Cc + g * N;
      const float* Bg = Bc + g * N;
      float* Sg = state.data() + g * N * hgP;
      float* yg = yc + g * hgP;
      // 1. contribution of the state entering the chunk, then the D skip
      if (c0 > 0) gemm_rm(false, false, Tc, hgP, N, Cg, C_ld, Sg, hgP, 0.f, yg, HP);
      for (int64_t t = 0; t < Tc; ++t)
        for (int64_t hl = 0; hl < hg; ++hl) {
          const int64_t h = g * hg + hl;
          float* yr = yc + t * HP + h * P;
          const float* xr = xc + t * x_ld + h * P;
          const float* Dr = s.D ? s.D + h * P : nullptr;
          if (c0 == 0) {  // no state yet: y starts from the D skip (y is uninitialised memory here)
            for (int64_t p = 0; p < P; ++p) yr[p] = Dr ? Dr[p] * xr[p] : 0.f;
            continue;
          }
          const float decay = fast_exp(acum[h * T + t]);
          if (Dr) {
#pragma omp simd
            for (int64_t p = 0; p < P; ++p) yr[p] = decay * yr[p] + Dr[p] * xr[p];
          } else {
#pragma omp simd
            for (int64_t p = 0; p < P; ++p) yr[p] = decay * yr[p];
          }
        }
      // 2. within the chunk: (C B^T masked by the per-head decay) @ x, one GEMM per head
      gemm_rm(false, true, Tc, Tc, N, Cg, C_ld, Bg, B_ld, 0.f, cb.data(), T);
      for (int64_t hl = 0; hl < hg; ++hl) {
        const int64_t h = g * hg + hl;
        const float* ah = acum.data() + h * T;
        const float* dh = dte.data() + h * T;
        for (int64_t t = 0; t < Tc; ++t) {
          const float at = ah[t];
          float* row = mix.data() + t * T;
          const float* cbr = cb.data() + t * T;
#pragma omp simd
          for (int64_t u = 0; u <= t; ++u) row[u] = cbr[u] * fast_exp(at - ah[u]) * dh[u];
          std::fill(row + t + 1, row + Tc, 0.f);
        }
        gemm_rm(false, false, Tc, P, Tc, mix.data(), T, xc + h * P, x_ld, 1.f, yc + h * P, HP);
      }
      // 3. carry the state past the chunk
      for (int64_t t = 0; t < Tc; ++t)
        for (int64_t hl = 0; hl < hg; ++hl) {
          const int64_t h = g * hg + hl;
          const float w = dte[h * T + t] * fast_exp(acum[h * T + Tc - 1] - acum[h * T + t]);
          const float* xr = xc + t * x_ld + h * P;
          float* xwr = xw.data() + t * hgP + hl * P;
#pragma omp simd
          for (int64_t p = 0; p < P; ++p) xwr[p] = w * xr[p];
        }
      if (c0 > 0) {
        for (int64_t n = 0; n < N; ++n)
          for (int64_t hl = 0; hl < hg; ++hl) {
            const float decay = fast_exp(acum[(g * hg + hl) * T + Tc - 1]);
            float* row = Sg + n * hgP + hl * P;
#pragma omp simd
            for (int64_t p = 0; p < P; ++p) row[p] *= decay;
          }
      }
      gemm_rm(true, false, N, hgP, Tc, Bg, B_ld, xw.data(), hgP, c0 > 0 ? 1.f : 0.f, Sg, hgP);
    }
    if (s.z && !s.norm_w) {
      for (int64_t t = 0; t < Tc; ++t) {
        float* yr = yc + t * HP;
        const float* zr = s.z + b * s.sz_b + src_row(t) * s.sz_t;
#pragma omp simd
        for (int64_t i = 0; i < HP; ++i) yr[i] *= zr[i] * sigmoid(zr[i]);
      }
    }
    if (s.norm_w) {  // gated RMSNorm of each output row, written to the row's place in the sequence
      for (int64_t t = 0; t < Tc; ++t)
        mambabench::gated_rmsnorm_row(ybuf.data() + t * HP, s.z + b * s.sz_b + src_row(t) * s.sz_t, s.norm_w,
                                      y_seq + src_row(t) * HP, HP, s.norm_group, s.eps);
    } else if (s.reverse || fused) {
      for (int64_t t = 0; t < Tc; ++t) std::copy_n(ybuf.data() + t * HP, HP, y_seq + src_row(t) * HP);
    }
  }
}

}  // namespace

at::Tensor ssd_fwd(at::Tensor x, at::Tensor dt, at::Tensor A, at::Tensor B, at::Tensor C,
                      at::Tensor D, at::Tensor z, at::Tensor dt_bias, bool dt_softplus, bool reverse) {
  TORCH_CHECK(x.dim() == 4 && x.stride(3) == 1 && x.stride(2) == x.size(3), "ssd_fwd: x must be (b, L, H, P) "
              "with contiguous (H, P)");
  TORCH_CHECK(dt.stride(2) == 1 && B.stride(3) == 1 && B.stride(2) == B.size(3) && C.stride(3) == 1 &&
              C.stride(2) == C.size(3), "ssd_fwd: dt, B, C need contiguous inner dims");
  TORCH_CHECK(!z.numel() || (z.stride(3) == 1 && z.stride(2) == z.size(3)), "ssd_fwd: z needs contiguous (H, P)");
  Ssd s;
  s.x = x.data_ptr<float>();
  s.dt = dt.data_ptr<float>();
  s.A = A.data_ptr<float>();
  s.B = B.data_ptr<float>();
  s.C = C.data_ptr<float>();
  s.D = D.numel() ? D.data_ptr<float>() : nullptr;
  s.z = z.numel() ? z.data_ptr<float>() : nullptr;
  s.bias = dt_bias.numel() ? dt_bias.data_ptr<float>() : nullptr;
  s.L = x.size(1), s.H = x.size(2), s.P = x.size(3), s.G = B.size(2), s.N = B.size(3);
  s.sx_b = x.stride(0), s.sx_t = x.stride(1), s.sdt_b = dt.stride(0), s.sdt_t = dt.stride(1);
  s.sB_b = B.stride(0), s.sB_t = B.stride(1), s.sC_b = C.stride(0), s.sC_t = C.stride(1);
  s.sz_b = z.numel() ? z.stride(0) : 0, s.sz_t = z.numel() ? z.stride(1) : 0;
  s.softplus = dt_softplus;
  s.reverse = reverse;
  TORCH_CHECK(s.H % s.G == 0, "ssd_fwd: heads must be divisible by groups");
  auto y = at::empty({x.size(0), s.L, s.H, s.P}, x.options());
  float* yp = y.data_ptr<float>();
  const int64_t per_seq = s.L * s.H * s.P;
  // One sequence per task; with fewer sequences than threads the GEMMs use the BLAS's own threads.
  at::parallel_for(0, x.size(0), 1, [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b) forward_sequence(s, b, yp + b * per_seq);
  });
  return y;
}

// Fused Mamba-2 mixer core with mamba_split_conv1d_scan_combined's layout, without the out projection:
// zxbcdt (batch, L, d_inner + conv_dim + H) with z, xBC, dt side by side (channels contiguous, any token
// stride); conv_weight (conv_dim, W); conv_bias (conv_dim,) or empty; A, dt_bias (H,); D (H, P) or empty;
// norm_weight (d_inner,). Returns rmsnorm(ssd(silu(conv(xBC))) * silu(z)) * norm_weight, (batch, L, d_inner),
// with dt = softplus(dt + dt_bias); reverse scans from the end (outputs in token order).
at::Tensor ssd_conv_norm_fwd(at::Tensor zxbcdt, at::Tensor conv_weight, at::Tensor conv_bias, at::Tensor dt_bias,
                             at::Tensor A, at::Tensor D, int64_t headdim, int64_t ngroups, at::Tensor norm_weight,
                             double eps, int64_t norm_group, bool reverse) {
  TORCH_CHECK(zxbcdt.dim() == 3 && zxbcdt.stride(2) == 1, "ssd_conv_norm: zxbcdt must be (b, L, width), "
              "channels contiguous");
  const int64_t H = A.size(0), P = headdim, d_inner = H * P, conv_dim = conv_weight.size(0);
  const int64_t N = (conv_dim - d_inner) / (2 * ngroups);
  TORCH_CHECK(zxbcdt.size(2) == d_inner + conv_dim + H && N * 2 * ngroups + d_inner == conv_dim,
              "ssd_conv_norm: widths do not fit (z, xBC, dt)");
  TORCH_CHECK(d_inner % norm_group == 0, "ssd_conv_norm: d_inner must be divisible by the norm group");
  Ssd s;
  float* base = zxbcdt.data_ptr<float>();
  s.z = base, s.xbc = base + d_inner, s.dt = base + d_inner + conv_dim;
  s.sz_b = s.sxbc_b = s.sdt_b = zxbcdt.stride(0);
  s.sz_t = s.sxbc_t = s.sdt_t = zxbcdt.stride(1);
  s.x = s.B = s.C = nullptr, s.sx_b = s.sx_t = s.sB_b = s.sB_t = s.sC_b = s.sC_t = 0;
  s.A = A.data_ptr<float>();
  s.D = D.numel() ? D.data_ptr<float>() : nullptr;
  s.bias = dt_bias.numel() ? dt_bias.data_ptr<float>() : nullptr;
  s.L = zxbcdt.size(1), s.H = H, s.P = P, s.G = ngroups, s.N = N;
  s.softplus = true, s.reverse = reverse;
  std::vector<float> wt(conv_weight.size(1) * conv_dim);  // (W, conv_dim): contiguous over channels
  const float* w = conv_weight.data_ptr<float>();
  s.W = conv_weight.size(1), s.conv_dim = conv_dim;
  for (int64_t c = 0; c < conv_dim; ++c)
    for (int64_t k = 0; k < s.W; ++k) wt[k * conv_dim + c] = w[c * s.W + k];
  s.conv_wt = wt.data();
  s.conv_b = conv_bias.numel() ? conv_bias.data_ptr<float>() : nullptr;
  s.norm_w = norm_weight.data_ptr<float>(), s.eps = static_cast<float>(eps), s.norm_group = norm_group;
  auto y = at::empty({zxbcdt.size(0), s.L, d_inner}, zxbcdt.options());
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, zxbcdt.size(0), 1, [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b) forward_sequence(s, b, yp + b * s.L * d_inner);
  });
  return y;
}
