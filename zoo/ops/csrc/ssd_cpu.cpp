// CPU forward and backward of the Mamba-2 SSD scan (state-space duality, Dao & Gu 2024, Sec. 6), with the
// semantics of mamba_ssm's mamba_chunk_scan_combined (see zoo/ops/ssd.py).
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
// The fused Mamba-2 mixer (zoo/ops/mamba2_fused.py) has three entries here: ssd_conv_norm_fwd (conv + SiLU,
// scan and gated RMSNorm per chunk), and for its backward ssd_conv_fwd (the conv output and the un-normed y
// it needs, recomputed in one pass, with the chunk states) and ssd_bwd_xbc (ssd_bwd reading x, B, C from the
// conv output and those states, writing their gradients side by side into one tensor, ddt into a slice of the
// op's input gradient).
//
// Per chunk of T tokens and group g (head h in group g = h / (H/G)), with a = cumsum(dt * A):
//   y_t  = exp(a_t) C_t . S  +  sum_{s<=t} (C_t . B_s) exp(a_t - a_s) dt_s x_s  +  D x_t
//   S   <- exp(a_end) S + sum_s B_s (exp(a_end - a_s) dt_s x_s)^T          (S: N x (heads of g * P))
// The two state terms are GEMMs over all heads of the group at once (N = 256, H*P = 2304 for T2MD), the
// intra-chunk term one small GEMM per head; everything else is a pass over a chunk that stays in cache.
//
// The backward (ssd_bwd, its math above backward_group) keeps nothing from the forward: it recomputes the
// chunk-boundary states by a forward pass of the state update alone, then walks the chunks from the last,
// carrying the state's gradient. Memory O(L): those states, L/64 x N x (H/G) x P floats per (sequence,
// group), live only during the backward. Cost: five state-sized GEMMs per chunk (the forward has two: readout
// and update; their transposes are four, plus the recomputed update), so its time is ~2.5x the forward's.
// ssd_bwd_xbc takes the states from the fused backward's recomputation (ssd_conv_fwd), which finds them anyway:
// four GEMMs per chunk there.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <ATen/ops/from_blob.h>
#include <ATen/Parallel.h>
#include <ATen/ops/mm.h>

#include <cmath>
#include <cstdlib>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

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
  // multiplying it: no conv output and no un-normed y are ever written to memory. Without norm_w and z
  // (ssd_conv_fwd, the fused backward's recomputation) the un-normed y is written instead, and with conv_out
  // the conv + SiLU rows too, (batch, L, conv_dim) contiguous, in token order.
  const float *xbc = nullptr, *conv_wt = nullptr, *conv_b = nullptr, *norm_w = nullptr;
  float* conv_out = nullptr;
  int64_t conv_dim = 0, W = 0, sxbc_b = 0, sxbc_t = 0, norm_group = 0;
  float eps = 0.f;
  // With states_out, the forward also writes the state entering every chunk k >= 1 of sequence b, group g at
  // states_out + ((b * nchunks + k) * G + g) * N * (H / G) * P (kept_state_offset; slot k = 0 is not written):
  // what ssd_bwd_xbc otherwise recomputes by a states-only pass.
  float* states_out = nullptr;
};

// Offset of the state entering chunk k of sequence b, group g in a kept-states buffer (see Ssd::states_out).
inline int64_t kept_state_offset(const Ssd& s, int64_t b, int64_t k, int64_t g) {
  const int64_t nchunks = (s.L + kChunk - 1) / kChunk;
  return ((b * nchunks + k) * s.G + g) * s.N * (s.H / s.G) * s.P;
}

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
      // conv + SiLU of the chunk's rows (tokens before the start are zeros), in processed order; each vector
      // of channels accumulated in a register over the taps and activated with the inlined exp
      using mambabench::kVec;
      using mambabench::vfloat;
      using mambabench::vload;
      using mambabench::vstore;
      const float* raw = s.xbc + b * s.sxbc_b;
      const int64_t cd = s.conv_dim;
      const float* rows[8];
      for (int64_t t = 0; t < Tc; ++t) {
        float* o = xbuf.data() + t * cd;
        const int64_t kfirst = std::max<int64_t>(0, (s.W - 1) - (c0 + t));
        for (int64_t k = kfirst; k < s.W; ++k) {
          const int64_t q = c0 + t - (s.W - 1) + k;  // processed index of the tap
          rows[k] = raw + (s.reverse ? s.L - 1 - q : q) * s.sxbc_t;
        }
        int64_t c = 0;
        for (; c + kVec <= cd; c += kVec) {
          vfloat acc = s.conv_b ? vload(s.conv_b + c) : vfloat{};
          for (int64_t k = kfirst; k < s.W; ++k) acc += vload(s.conv_wt + k * cd + c) * vload(rows[k] + c);
          vstore(o + c, acc * mambabench::vsigmoid(acc));
        }
        for (; c < cd; ++c) {
          float acc = s.conv_b ? s.conv_b[c] : 0.f;
          for (int64_t k = kfirst; k < s.W; ++k) acc += s.conv_wt[k * cd + c] * rows[k][c];
          o[c] = acc * sigmoid(acc);
        }
        if (s.conv_out) std::copy_n(o, cd, s.conv_out + (b * s.L + src_row(t)) * cd);
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
      if (s.states_out && c0 + T < s.L)  // the state entering the next chunk, for ssd_bwd_xbc
        std::copy_n(Sg, N * hgP, s.states_out + kept_state_offset(s, b, c0 / T + 1, g));
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


// ---------------------------------------------------------------------------------------------------------
// Backward (ssd_bwd). Per chunk, head h of group g, with e_t = exp(a_t), f_t = exp(a_end - a_t), K_ts =
// (C_t . B_s) exp(a_t - a_s) for s <= t, S0 the state entering the chunk and dS the gradient of the state
// leaving it (dy = dout * silu(z), or dout):
//   dxdt_s = f_s B_s^T dS + sum_t K_ts dy_t            (the gradient of dt_s x_s)
//   dx_s   = dt_s dxdt_s + D dy_s,    d(dt_s) += x_s . dxdt_s
//   dC_t   = sum_h e_t S0 dy_t + sum_s dCB_ts B_s,     dCB_ts = sum_h (dy_t . x_s) exp(a_t - a_s) dt_s
//   dB_s   = sum_h dS (f_s dt_s x_s) + sum_t dCB_ts C_t
//   dS0    = exp(a_end) dS + sum_t C_t (e_t dy_t)^T     (carried to the chunk before)
// and the chunk-local cumulative log-decay a_t gets e_t dy_t . (S0^T C_t) (readout), +-(dy_t . x_s) K_ts
// dt_s (row t, column s of the intra-chunk term), +-(x_s . f_s B_s^T dS) f_s dt_s and exp(a_end) <dS, S0>
// (at a_end: the state carried past the chunk); a reverse cumsum within the chunk turns d a into
// d(dt A). The state terms are GEMMs over all heads of the group: Q = B dS, dB = (f dt x) dS^T,
// dS0 = C^T (e dy), and per head Z = dy S0^T (T x N), which gives both dC's readout term (sum_h e_t Z_t)
// and its a_t term (e_t C_t . Z_t) without a C S0 readout. With z, y is recomputed per chunk (one more
// readout GEMM) for dz.
//
// Memory: the states entering every chunk are recomputed by a pass of the state update alone (one GEMM per
// chunk) and held during the backward of one (sequence, group): L/64 x N x (heads of the group x P) floats,
// 4x the size of x at T2MD's shapes; nothing is kept between the forward and the backward. (ssd_bwd_xbc reads
// them from ssd_conv_fwd instead, all sequences' at once.)

// Chunk rows of a token-major tensor, in processed order, copied contiguously: row t of dst (width w) is
// row src_row(t) of base (stride `ld`), columns [off, off + w). Contiguous rows let the GEMMs read them
// forwards whatever the scan direction.
void gather_rows(const float* base, int64_t ld, int64_t off, int64_t w, const Ssd& s, int64_t c0, int64_t Tc,
                 float* dst) {
  for (int64_t t = 0; t < Tc; ++t) {
    const int64_t row = s.reverse ? s.L - 1 - (c0 + t) : c0 + t;
    std::copy_n(base + row * ld + off, w, dst + t * w);
  }
}

// Effective dt (dte), chunk-local cumulative log-decay (acum) and d dte / d raw dt (dsp) of the heads h0 ..
// h0 + hg - 1 for the chunk starting at c0; head-major [hl][t] with row length kChunk.
void chunk_decay(const Ssd& s, const float* dt_seq, int64_t c0, int64_t Tc, int64_t h0, int64_t hg, float* dte,
                 float* acum, float* dsp) {
  const int64_t T = kChunk;
  for (int64_t hl = 0; hl < hg; ++hl) {
    const int64_t h = h0 + hl;
    const float bias = s.bias ? s.bias[h] : 0.f, a = s.A[h];
    float run = 0.f;
    for (int64_t t = 0; t < Tc; ++t) {
      const int64_t row = s.reverse ? s.L - 1 - (c0 + t) : c0 + t;
      const float raw = dt_seq[row * s.sdt_t + h] + bias;
      float v = raw, d = 1.f;
      if (s.softplus && raw <= 20.f) v = softplus(raw), d = sigmoid(raw);  // threshold 20 as mamba_ssm
      dte[hl * T + t] = v;
      if (dsp) dsp[hl * T + t] = d;
      run += v * a;
      acum[hl * T + t] = run;
    }
  }
}

// xw_t = dt_t exp(a_end - a_t) x_t for each head of the group (Tc x hgP): what a token adds to the state
// leaving its chunk, as seen at the chunk's end.
void weighted_inputs(const float* xb, const float* dte, const float* acum, int64_t Tc, int64_t hg, int64_t P,
                     float* xw) {
  const int64_t T = kChunk, hgP = hg * P;
  for (int64_t t = 0; t < Tc; ++t)
    for (int64_t hl = 0; hl < hg; ++hl) {
      const float w = dte[hl * T + t] * fast_exp(acum[hl * T + Tc - 1] - acum[hl * T + t]);
      const float* xr = xb + t * hgP + hl * P;
      float* o = xw + t * hgP + hl * P;
#pragma omp simd
      for (int64_t p = 0; p < P; ++p) o[p] = w * xr[p];
    }
}

// out <- exp(a_end) S per head block of columns (N x hgP; out may be S): one pass over the state.
void decay_state(const float* S, const float* acum, int64_t Tc, int64_t N, int64_t hg, int64_t P, float* out) {
  const int64_t hgP = hg * P;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t hl = 0; hl < hg; ++hl) {
      const float d = fast_exp(acum[hl * kChunk + Tc - 1]);
      const float* in = S + n * hgP + hl * P;
      float* row = out + n * hgP + hl * P;
#pragma omp simd
      for (int64_t p = 0; p < P; ++p) row[p] = d * in[p];
    }
}

// dS <- exp(a_end) dS, and ds0[hl] = <dS, S0> of each head's block before the decay (one pass over both).
void decay_grad_state(float* dS, const float* S0, const float* acum, int64_t Tc, int64_t N, int64_t hg, int64_t P,
                      float* ds0) {
  const int64_t hgP = hg * P;
  std::fill_n(ds0, hg, 0.f);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t hl = 0; hl < hg; ++hl) {
      const float d = fast_exp(acum[hl * kChunk + Tc - 1]);
      float* row = dS + n * hgP + hl * P;
      const float* s0 = S0 + n * hgP + hl * P;
      float acc = 0.f;
#pragma omp simd reduction(+ : acc)
      for (int64_t p = 0; p < P; ++p) {
        acc += row[p] * s0[p];
        row[p] *= d;
      }
      ds0[hl] += acc;
    }
}

// Scratch for the chunk states: 2 MB aligned and advised as huge pages (Linux), so first touching tens of MB
// per backward does not cost a page fault per 4 KB.
struct StateBuffer {
  float* data = nullptr;
  explicit StateBuffer(int64_t floats) {
    if (floats == 0) return;
    constexpr size_t kHuge = size_t(2) << 20;
    const size_t bytes = (static_cast<size_t>(floats) * sizeof(float) + kHuge - 1) / kHuge * kHuge;
    data = static_cast<float*>(std::aligned_alloc(kHuge, bytes));
    TORCH_CHECK(data, "ssd_bwd: out of memory for the chunk states");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(data, bytes, MADV_HUGEPAGE);
#endif
  }
  ~StateBuffer() { std::free(data); }
  StateBuffer(const StateBuffer&) = delete;
  StateBuffer& operator=(const StateBuffer&) = delete;
};

// The state (N x hgP) of group g entering each chunk k >= 1 of sequence b, into states + k * N * hgP: the
// forward's state update alone (no readout, no intra-chunk term).
void chunk_states(const Ssd& s, int64_t b, int64_t g, float* states) {
  const int64_t T = kChunk, N = s.N, hg = s.H / s.G, P = s.P, hgP = hg * P, NS = N * hgP;
  const int64_t nc = (s.L + T - 1) / T;
  std::vector<float> xb(T * hgP), bb(T * N), xw(T * hgP), dte(hg * T), acum(hg * T);
  for (int64_t k = 0; k + 1 < nc; ++k) {
    const int64_t c0 = k * T, Tc = T;  // every chunk but the last is full
    gather_rows(s.x + b * s.sx_b, s.sx_t, g * hgP, hgP, s, c0, Tc, xb.data());
    gather_rows(s.B + b * s.sB_b, s.sB_t, g * N, N, s, c0, Tc, bb.data());
    chunk_decay(s, s.dt + b * s.sdt_b, c0, Tc, g * hg, hg, dte.data(), acum.data(), nullptr);
    weighted_inputs(xb.data(), dte.data(), acum.data(), Tc, hg, P, xw.data());
    float* next = states + (k + 1) * NS;
    if (k > 0) decay_state(states + k * NS, acum.data(), Tc, N, hg, P, next);
    gemm_rm(true, false, N, hgP, Tc, bb.data(), N, xw.data(), hgP, k > 0 ? 1.f : 0.f, next, hgP);
  }
}

// Per head: dec_ts = exp(a_t - a_s) and K_ts = CB_ts dec_ts for s <= t, zero above the diagonal (Tc x Tc,
// row length kChunk).
void decay_matrices(const float* ah, const float* cb, int64_t Tc, float* K, float* dec) {
  const int64_t T = kChunk;
  for (int64_t t = 0; t < Tc; ++t) {
    const float at = ah[t];
    float *kr = K + t * T, *dr = dec + t * T;
    const float* cbr = cb + t * T;
#pragma omp simd
    for (int64_t u = 0; u <= t; ++u) {
      dr[u] = fast_exp(at - ah[u]);
      kr[u] = cbr[u] * dr[u];
    }
    std::fill(kr + t + 1, kr + Tc, 0.f);
    std::fill(dr + t + 1, dr + Tc, 0.f);
  }
}

struct SsdGrads {
  const float* dout;                 // (batch, L, H, P) contiguous
  float *dx, *ddt, *dB, *dC, *dz;    // (batch, L, H, P), (batch, L, H), (batch, L, G, N) x2, like dx (or null)
  float *dA, *dD, *dbias;            // per task partials: [task][H], [task][H * P], [task][H]
  // batch and token strides of the outputs (their inner dims contiguous): dx and dz, ddt, dB and dC
  int64_t sdx_b, sdx_t, sdt_b, sdt_t, sbc_b, sbc_t;
};

// Backward of sequence b, group g (see the comment above): chunks from last to first, carrying dS. The states
// entering the chunks come from `kept` (a forward's Ssd::states_out) or, when it is null, a states-only pass.
void backward_group(const Ssd& s, const SsdGrads& o, int64_t b, int64_t g, const float* kept, float* dA, float* dD,
                    float* dbias) {
  const int64_t T = kChunk, N = s.N, H = s.H, P = s.P, G = s.G, hg = H / G, hgP = hg * P, HP = H * P;
  const int64_t NS = N * hgP, nc = (s.L + T - 1) / T, h0 = g * hg;
  // the states entering chunks 1 .. nc-1 (chunk 0 starts from zero)
  StateBuffer states(kept ? 0 : nc * NS);
  if (!kept) chunk_states(s, b, g, states.data);
  std::vector<float> dS(NS, 0.f);
  std::vector<float> xb(T * hgP), bb(T * N), cb(T * N), gb(T * hgP), zb, yb, dyb;
  std::vector<float> xw(T * hgP), dxdt(T * hgP), edy(T * hgP), Z(T * N), dBb(T * N), dCb(T * N);
  std::vector<float> CB(T * T), K(T * T), dec(T * T), dMp(T * T), dCB(T * T), colsum(T);
  std::vector<float> dte(hg * T), acum(hg * T), dsp(hg * T), dacum(hg * T), ea(hg * T), ds0(hg);
  if (s.z) zb.resize(T * hgP), yb.resize(T * hgP), dyb.resize(T * hgP);
  const float* dt_seq = s.dt + b * s.sdt_b;
  for (int64_t k = nc - 1; k >= 0; --k) {
    const int64_t c0 = k * T, Tc = std::min(T, s.L - c0);
    const float* S0 = kept ? kept + kept_state_offset(s, b, k, g) : states.data + k * NS;  // valid for k > 0
    const bool has_state = k > 0, has_dS = k + 1 < nc;
    gather_rows(s.x + b * s.sx_b, s.sx_t, g * hgP, hgP, s, c0, Tc, xb.data());
    gather_rows(s.B + b * s.sB_b, s.sB_t, g * N, N, s, c0, Tc, bb.data());
    gather_rows(s.C + b * s.sC_b, s.sC_t, g * N, N, s, c0, Tc, cb.data());
    gather_rows(o.dout + b * s.L * HP, HP, g * hgP, hgP, s, c0, Tc, gb.data());
    chunk_decay(s, dt_seq, c0, Tc, h0, hg, dte.data(), acum.data(), dsp.data());
    for (int64_t i = 0; i < hg * T; ++i) ea[i] = fast_exp(acum[i]);
    std::fill(dacum.begin(), dacum.end(), 0.f);
    gemm_rm(false, true, Tc, Tc, N, cb.data(), N, bb.data(), N, 0.f, CB.data(), T);

    // 1. with z: recompute y (state readout + intra-chunk term + D skip) for dz, and dy = dout * silu(z)
    const float* dy = gb.data();
    if (s.z) {
      gather_rows(s.z + b * s.sz_b, s.sz_t, g * hgP, hgP, s, c0, Tc, zb.data());
      if (has_state) {
        gemm_rm(false, false, Tc, hgP, N, cb.data(), N, S0, hgP, 0.f, yb.data(), hgP);
        for (int64_t t = 0; t < Tc; ++t)
          for (int64_t hl = 0; hl < hg; ++hl) {
            const float e = ea[hl * T + t];
            float* yr = yb.data() + t * hgP + hl * P;
#pragma omp simd
            for (int64_t p = 0; p < P; ++p) yr[p] *= e;
          }
      } else {
        std::fill(yb.begin(), yb.end(), 0.f);
      }
      for (int64_t t = 0; t < Tc; ++t)  // xw as scratch: dt x
        for (int64_t hl = 0; hl < hg; ++hl) {
          const float d = dte[hl * T + t];
          const float* xr = xb.data() + t * hgP + hl * P;
          float* w = xw.data() + t * hgP + hl * P;
#pragma omp simd
          for (int64_t p = 0; p < P; ++p) w[p] = d * xr[p];
        }
      for (int64_t hl = 0; hl < hg; ++hl) {
        decay_matrices(acum.data() + hl * T, CB.data(), Tc, K.data(), dec.data());
        gemm_rm(false, false, Tc, P, Tc, K.data(), T, xw.data() + hl * P, hgP, 1.f, yb.data() + hl * P, hgP);
      }
      for (int64_t t = 0; t < Tc; ++t) {
        const int64_t row = s.reverse ? s.L - 1 - (c0 + t) : c0 + t;
        float* dzr = o.dz + b * o.sdx_b + row * o.sdx_t + g * hgP;
        const float *zr = zb.data() + t * hgP, *gr = gb.data() + t * hgP, *xr = xb.data() + t * hgP;
        const float* Dr = s.D ? s.D + h0 * P : nullptr;
        float *yr = yb.data() + t * hgP, *dyr = dyb.data() + t * hgP;
#pragma omp simd
        for (int64_t i = 0; i < hgP; ++i) {
          const float y = yr[i] + (Dr ? Dr[i] * xr[i] : 0.f);
          const float sg = sigmoid(zr[i]);
          dzr[i] = gr[i] * y * sg * (1.f + zr[i] * (1.f - sg));
          dyr[i] = gr[i] * zr[i] * sg;
        }
      }
      dy = dyb.data();
    }

    // 2. the state leaving the chunk: dxdt = f B dS, dB = (f dt x) dS^T, and the a terms
    if (has_dS) {
      gemm_rm(false, false, Tc, hgP, N, bb.data(), N, dS.data(), hgP, 0.f, dxdt.data(), hgP);
      for (int64_t t = 0; t < Tc; ++t)
        for (int64_t hl = 0; hl < hg; ++hl) {
          const float f = fast_exp(acum[hl * T + Tc - 1] - acum[hl * T + t]), w = f * dte[hl * T + t];
          const float* xr = xb.data() + t * hgP + hl * P;
          float* q = dxdt.data() + t * hgP + hl * P;
          float* xwr = xw.data() + t * hgP + hl * P;
          float dw = 0.f;
#pragma omp simd reduction(+ : dw)
          for (int64_t p = 0; p < P; ++p) {
            dw += xr[p] * q[p];
            q[p] *= f;
            xwr[p] = w * xr[p];
          }
          dacum[hl * T + Tc - 1] += dw * w;
          dacum[hl * T + t] -= dw * w;
        }
      gemm_rm(false, true, Tc, N, hgP, xw.data(), hgP, dS.data(), hgP, 0.f, dBb.data(), N);
    } else {
      std::fill(dxdt.begin(), dxdt.end(), 0.f);
      std::fill(dBb.begin(), dBb.end(), 0.f);
    }

    // 3. within the chunk, per head: dxdt += K^T dy, dMp = dy x^T, then dCB and the a terms
    std::fill(dCB.begin(), dCB.end(), 0.f);
    for (int64_t hl = 0; hl < hg; ++hl) {
      const float *ah = acum.data() + hl * T, *dh = dte.data() + hl * T;
      decay_matrices(ah, CB.data(), Tc, K.data(), dec.data());
      gemm_rm(true, false, Tc, P, Tc, K.data(), T, dy + hl * P, hgP, 1.f, dxdt.data() + hl * P, hgP);
      gemm_rm(false, true, Tc, Tc, P, dy + hl * P, hgP, xb.data() + hl * P, hgP, 0.f, dMp.data(), T);
      std::fill(colsum.begin(), colsum.end(), 0.f);
      float* da = dacum.data() + hl * T;
      for (int64_t t = 0; t < Tc; ++t) {
        const float *mr = dMp.data() + t * T, *dr = dec.data() + t * T, *cbr = CB.data() + t * T;
        float* dcbr = dCB.data() + t * T;
        float rs = 0.f;
#pragma omp simd reduction(+ : rs)
        for (int64_t u = 0; u <= t; ++u) {
          const float v = mr[u] * dr[u] * dh[u];
          dcbr[u] += v;
          const float w = v * cbr[u];
          rs += w;
          colsum[u] += w;
        }
        da[t] += rs;
      }
      for (int64_t t = 0; t < Tc; ++t) da[t] -= colsum[t];
    }
    gemm_rm(false, false, Tc, N, Tc, dCB.data(), T, bb.data(), N, 0.f, dCb.data(), N);
    gemm_rm(true, false, Tc, N, Tc, dCB.data(), T, cb.data(), N, 1.f, dBb.data(), N);

    // 4. the readout of the entering state: Z = dy S0^T per head; dC += e Z, a_t += e C . Z
    if (has_state) {
      for (int64_t hl = 0; hl < hg; ++hl) {
        gemm_rm(false, true, Tc, N, P, dy + hl * P, hgP, S0 + hl * P, hgP, 0.f, Z.data(), N);
        for (int64_t t = 0; t < Tc; ++t) {
          const float e = ea[hl * T + t];
          const float *zr = Z.data() + t * N, *cr = cb.data() + t * N;
          float* dcr = dCb.data() + t * N;
          float acc = 0.f;
#pragma omp simd reduction(+ : acc)
          for (int64_t n = 0; n < N; ++n) {
            acc += cr[n] * zr[n];
            dcr[n] += e * zr[n];
          }
          dacum[hl * T + t] += e * acc;
        }
      }
      // 5. carry dS to the chunk before: dS0 = exp(a_end) dS + C^T (e dy)
      for (int64_t t = 0; t < Tc; ++t)
        for (int64_t hl = 0; hl < hg; ++hl) {
          const float e = ea[hl * T + t];
          const float* dyr = dy + t * hgP + hl * P;
          float* o2 = edy.data() + t * hgP + hl * P;
#pragma omp simd
          for (int64_t p = 0; p < P; ++p) o2[p] = e * dyr[p];
        }
      if (has_dS) {  // with the a_end term exp(a_end) <dS, S0> of the state carried past the chunk
        decay_grad_state(dS.data(), S0, acum.data(), Tc, N, hg, P, ds0.data());
        for (int64_t hl = 0; hl < hg; ++hl) dacum[hl * T + Tc - 1] += ea[hl * T + Tc - 1] * ds0[hl];
      }
      gemm_rm(true, false, N, hgP, Tc, cb.data(), N, edy.data(), hgP, has_dS ? 1.f : 0.f, dS.data(), hgP);
    }

    // 6. per token: dx, d(dt) (through A, the cumsum, dt_bias and softplus), dD, dA; rows back in place
    for (int64_t hl = 0; hl < hg; ++hl) {
      const int64_t h = h0 + hl;
      const float* Dr = s.D ? s.D + h * P : nullptr;
      float run = 0.f;  // reverse cumsum of d a over the chunk
      for (int64_t t = Tc - 1; t >= 0; --t) {
        const int64_t row = s.reverse ? s.L - 1 - (c0 + t) : c0 + t;
        run += dacum[hl * T + t];
        const float* xr = xb.data() + t * hgP + hl * P;
        const float* q = dxdt.data() + t * hgP + hl * P;
        const float* dyr = dy + t * hgP + hl * P;
        float* dxr = o.dx + b * o.sdx_b + row * o.sdx_t + h * P;
        const float d = dte[hl * T + t];
        float ddt = 0.f;
        if (Dr) {
          float* dDr = dD + h * P;
#pragma omp simd reduction(+ : ddt)
          for (int64_t p = 0; p < P; ++p) {
            ddt += xr[p] * q[p];
            dxr[p] = d * q[p] + Dr[p] * dyr[p];
            dDr[p] += dyr[p] * xr[p];
          }
        } else {
#pragma omp simd reduction(+ : ddt)
          for (int64_t p = 0; p < P; ++p) {
            ddt += xr[p] * q[p];
            dxr[p] = d * q[p];
          }
        }
        ddt += s.A[h] * run;
        dA[h] += d * run;
        const float draw = ddt * dsp[hl * T + t];
        o.ddt[b * o.sdt_b + row * o.sdt_t + h] = draw;
        dbias[h] += draw;
      }
    }
    for (int64_t t = 0; t < Tc; ++t) {
      const int64_t row = s.reverse ? s.L - 1 - (c0 + t) : c0 + t;
      std::copy_n(dBb.data() + t * N, N, o.dB + b * o.sbc_b + row * o.sbc_t + g * N);
      std::copy_n(dCb.data() + t * N, N, o.dC + b * o.sbc_b + row * o.sbc_t + g * N);
    }
  }
}

// The unfused scan's view of its tensors (ssd_fwd and ssd_bwd take the same ones), checked for the layouts the
// kernels read; `op` names the caller in the errors.
Ssd make_ssd(const char* op, const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A, const at::Tensor& B,
             const at::Tensor& C, const at::Tensor& D, const at::Tensor& z, const at::Tensor& dt_bias,
             bool dt_softplus, bool reverse) {
  TORCH_CHECK(x.dim() == 4 && x.stride(3) == 1 && x.stride(2) == x.size(3), op, ": x must be (b, L, H, P) "
              "with contiguous (H, P)");
  TORCH_CHECK(dt.stride(2) == 1 && B.stride(3) == 1 && B.stride(2) == B.size(3) && C.stride(3) == 1 &&
              C.stride(2) == C.size(3), op, ": dt, B, C need contiguous inner dims");
  TORCH_CHECK(!z.numel() || (z.stride(3) == 1 && z.stride(2) == z.size(3)), op, ": z needs contiguous (H, P)");
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
  TORCH_CHECK(s.H % s.G == 0, op, ": heads must be divisible by groups");
  return s;
}

}  // namespace

at::Tensor ssd_fwd(at::Tensor x, at::Tensor dt, at::Tensor A, at::Tensor B, at::Tensor C,
                      at::Tensor D, at::Tensor z, at::Tensor dt_bias, bool dt_softplus, bool reverse) {
  const Ssd s = make_ssd("ssd_fwd", x, dt, A, B, C, D, z, dt_bias, dt_softplus, reverse);
  auto y = at::empty({x.size(0), s.L, s.H, s.P}, x.options());
  float* yp = y.data_ptr<float>();
  const int64_t per_seq = s.L * s.H * s.P;
  // One sequence per task; with fewer sequences than threads the GEMMs use the BLAS's own threads.
  at::parallel_for(0, x.size(0), 1, [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b) forward_sequence(s, b, yp + b * per_seq);
  });
  return y;
}

namespace {

// The fused mode's view of zxbcdt (batch, L, d_inner + conv_dim + H: z, xBC, dt side by side, channels
// contiguous, any token stride) and its parameters, checked; conv_wt receives the conv weight transposed to
// (W, conv_dim), contiguous over channels, and must outlive the returned view. `op` names the caller.
Ssd make_fused(const char* op, const at::Tensor& zxbcdt, const at::Tensor& conv_weight, const at::Tensor& conv_bias,
               const at::Tensor& dt_bias, const at::Tensor& A, const at::Tensor& D, int64_t headdim, int64_t ngroups,
               bool reverse, std::vector<float>& conv_wt) {
  TORCH_CHECK(zxbcdt.dim() == 3 && zxbcdt.stride(2) == 1, op, ": zxbcdt must be (b, L, width), channels contiguous");
  const int64_t H = A.size(0), P = headdim, d_inner = H * P, conv_dim = conv_weight.size(0);
  const int64_t N = (conv_dim - d_inner) / (2 * ngroups);
  TORCH_CHECK(zxbcdt.size(2) == d_inner + conv_dim + H && N * 2 * ngroups + d_inner == conv_dim, op,
              ": widths do not fit (z, xBC, dt)");
  TORCH_CHECK(conv_weight.size(1) <= 8, op, ": conv width must be <= 8");
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
  conv_wt.resize(conv_weight.size(1) * conv_dim);
  const float* w = conv_weight.data_ptr<float>();
  s.W = conv_weight.size(1), s.conv_dim = conv_dim;
  for (int64_t c = 0; c < conv_dim; ++c)
    for (int64_t k = 0; k < s.W; ++k) conv_wt[k * conv_dim + c] = w[c * s.W + k];
  s.conv_wt = conv_wt.data();
  s.conv_b = conv_bias.numel() ? conv_bias.data_ptr<float>() : nullptr;
  return s;
}

// forward_sequence of every sequence into y (batch, L, H * P), one sequence per task.
void forward_all(const Ssd& s, int64_t batch, float* y) {
  at::parallel_for(0, batch, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b) forward_sequence(s, b, y + b * s.L * s.H * s.P);
  });
}

}  // namespace

// Fused Mamba-2 mixer core with mamba_split_conv1d_scan_combined's layout, without the out projection:
// zxbcdt (batch, L, d_inner + conv_dim + H) with z, xBC, dt side by side (channels contiguous, any token
// stride); conv_weight (conv_dim, W); conv_bias (conv_dim,) or empty; A, dt_bias (H,); D (H, P) or empty;
// norm_weight (d_inner,). Returns rmsnorm(ssd(silu(conv(xBC))) * silu(z)) * norm_weight, (batch, L, d_inner),
// with dt = softplus(dt + dt_bias); reverse scans from the end (outputs in token order).
at::Tensor ssd_conv_norm_fwd(at::Tensor zxbcdt, at::Tensor conv_weight, at::Tensor conv_bias, at::Tensor dt_bias,
                             at::Tensor A, at::Tensor D, int64_t headdim, int64_t ngroups, at::Tensor norm_weight,
                             double eps, int64_t norm_group, bool reverse) {
  std::vector<float> wt;
  Ssd s = make_fused("ssd_conv_norm", zxbcdt, conv_weight, conv_bias, dt_bias, A, D, headdim, ngroups, reverse, wt);
  TORCH_CHECK((s.H * s.P) % norm_group == 0, "ssd_conv_norm: d_inner must be divisible by the norm group");
  s.norm_w = norm_weight.data_ptr<float>(), s.eps = static_cast<float>(eps), s.norm_group = norm_group;
  auto y = at::empty({zxbcdt.size(0), s.L, s.H * s.P}, zxbcdt.options());
  forward_all(s, zxbcdt.size(0), y.data_ptr<float>());
  return y;
}

// What the fused op's backward needs of its forward, from the same arguments (without the norm's): [xBC, y,
// states], xBC = silu(causal conv(xBC raw)) (batch, L, conv_dim), y = ssd(x, dt, A, B, C, D) the un-normed,
// ungated scan output (batch, L, d_inner), both contiguous float32, and the state entering every chunk (batch,
// chunks, G, N, (H / G) * P; chunk 0's slot unset) for ssd_bwd_xbc, in one pass (the conv computed once for
// all). The states, (N / 64) x the size of x, live only during the backward; nothing is kept from the forward.
std::vector<at::Tensor> ssd_conv_fwd(at::Tensor zxbcdt, at::Tensor conv_weight, at::Tensor conv_bias,
                                     at::Tensor dt_bias, at::Tensor A, at::Tensor D, int64_t headdim, int64_t ngroups,
                                     bool reverse) {
  std::vector<float> wt;
  Ssd s = make_fused("ssd_conv_fwd", zxbcdt, conv_weight, conv_bias, dt_bias, A, D, headdim, ngroups, reverse, wt);
  s.z = nullptr;  // no gate: y is the scan's output
  auto xbc = at::empty({zxbcdt.size(0), s.L, s.conv_dim}, zxbcdt.options());
  auto y = at::empty({zxbcdt.size(0), s.L, s.H * s.P}, zxbcdt.options());
  const int64_t chunks = (s.L + kChunk - 1) / kChunk;
  auto states = at::empty({zxbcdt.size(0), chunks, s.G, s.N, s.H / s.G * s.P}, zxbcdt.options());
  s.conv_out = xbc.data_ptr<float>();
  s.states_out = states.data_ptr<float>();
  forward_all(s, zxbcdt.size(0), y.data_ptr<float>());
  return {xbc, y, states};
}

namespace {

// backward_group over every (sequence, group) pair into o's gradient pointers; returns [dA, dD (H, P) or
// empty, ddt_bias or empty], summed from per-task partials (deterministic whatever the thread count).
std::vector<at::Tensor> backward_all(const Ssd& s, SsdGrads o, int64_t batch, const at::TensorOptions& opts,
                                     const float* kept = nullptr) {
  const int64_t tasks = batch * s.G, H = s.H, P = s.P;
  auto dA_parts = at::zeros({tasks, H}, opts), dD_parts = at::zeros({tasks, H * P}, opts);
  auto dbias_parts = at::zeros({tasks, H}, opts);
  o.dA = dA_parts.data_ptr<float>(), o.dD = dD_parts.data_ptr<float>(), o.dbias = dbias_parts.data_ptr<float>();
  if (s.L > 0)
    at::parallel_for(0, tasks, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i)
        backward_group(s, o, i / s.G, i % s.G, kept, o.dA + i * H, o.dD + i * H * P, o.dbias + i * H);
    });
  auto empty = at::empty({0}, opts);
  return {dA_parts.sum(0), s.D ? dD_parts.sum(0).view({H, P}) : empty, s.bias ? dbias_parts.sum(0) : empty};
}

}  // namespace

// Gradients of ssd_fwd (same arguments, dout: (batch, L, H, P) contiguous): [dx, ddt (raw dt), dA, dB, dC, dD
// (H, P), dz, ddt_bias], empty where the input is absent. Parallel over (sequence, group) pairs; dA, dD and
// ddt_bias are summed from per-task partials.
std::vector<at::Tensor> ssd_bwd(at::Tensor dout, at::Tensor x, at::Tensor dt, at::Tensor A, at::Tensor B,
                                at::Tensor C, at::Tensor D, at::Tensor z, at::Tensor dt_bias, bool dt_softplus,
                                bool reverse) {
  TORCH_CHECK(dout.is_contiguous() && dout.sizes() == x.sizes(), "ssd_bwd: dout must be contiguous, like x");
  const Ssd s = make_ssd("ssd_bwd", x, dt, A, B, C, D, z, dt_bias, dt_softplus, reverse);
  const int64_t batch = x.size(0), H = s.H, P = s.P, GN = s.G * s.N;
  const auto opts = x.options().dtype(at::kFloat);
  auto dx = at::empty({batch, s.L, H, P}, opts);
  auto ddt = at::empty({batch, s.L, H}, opts);
  auto dB = at::empty({batch, s.L, s.G, s.N}, opts);
  auto dC = at::empty({batch, s.L, s.G, s.N}, opts);
  auto dz = s.z ? at::empty({batch, s.L, H, P}, opts) : at::empty({0}, opts);
  SsdGrads o{dout.data_ptr<float>(), dx.data_ptr<float>(), ddt.data_ptr<float>(), dB.data_ptr<float>(),
             dC.data_ptr<float>(), s.z ? dz.data_ptr<float>() : nullptr, nullptr, nullptr, nullptr,
             s.L * H * P, H * P, s.L * H, H, s.L * GN, GN};
  auto params = backward_all(s, o, batch, opts);
  return {dx, ddt, params[0], dB, dC, params[1], dz, params[2]};
}

// The SSD backward in the fused op's layout (its backward, zoo/ops/mamba2_fused.py): xBC (batch, L, conv_dim =
// H * P + 2 * G * N) holds x, B, C side by side (channels contiguous, any token stride), dt is the raw dt
// (softplus(dt + dt_bias) is applied, as the fused forward does), dout (batch, L, H, P) contiguous. dx, dB, dC
// are written side by side into dxBC (like xBC) and the raw dt's gradient into ddt ((batch, L, H), channels
// contiguous, any token stride: a slice of the fused op's input gradient), without intermediate tensors.
// `states`: ssd_conv_fwd's chunk states (contiguous), or empty to recompute them here.
// Returns [dA, dD (H, P) or empty, ddt_bias or empty].
std::vector<at::Tensor> ssd_bwd_xbc(at::Tensor dout, at::Tensor xbc, at::Tensor dt, at::Tensor A, at::Tensor D,
                                    at::Tensor dt_bias, int64_t headdim, int64_t ngroups, bool reverse, at::Tensor dxbc,
                                    at::Tensor ddt, at::Tensor states) {
  const int64_t batch = xbc.size(0), L = xbc.size(1), H = A.size(0), P = headdim, HP = H * P;
  const int64_t GN = (xbc.size(2) - HP) / 2, N = GN / ngroups;
  TORCH_CHECK(xbc.dim() == 3 && xbc.stride(2) == 1 && HP + 2 * ngroups * N == xbc.size(2) &&
                  dxbc.sizes() == xbc.sizes() && dxbc.stride(2) == 1 && ddt.sizes() == dt.sizes() &&
                  ddt.stride(2) == 1 && dout.is_contiguous() && dout.numel() == batch * L * HP,
              "ssd_bwd_xbc: xBC, dxBC (b, L, H*P + 2*G*N), dt, ddt (b, L, H) with contiguous channels and a "
              "contiguous dout (b, L, H, P) expected");
  auto x = xbc.narrow(2, 0, HP).view({batch, L, H, P});
  auto B = xbc.narrow(2, HP, GN).view({batch, L, ngroups, N});
  auto C = xbc.narrow(2, HP + GN, GN).view({batch, L, ngroups, N});
  const Ssd s = make_ssd("ssd_bwd_xbc", x, dt, A, B, C, D, at::empty({0}, xbc.options()), dt_bias, true, reverse);
  float* base = dxbc.data_ptr<float>();
  SsdGrads o{dout.data_ptr<float>(), base, ddt.data_ptr<float>(), base + HP, base + HP + GN, nullptr, nullptr,
             nullptr, nullptr, dxbc.stride(0), dxbc.stride(1), ddt.stride(0), ddt.stride(1), dxbc.stride(0),
             dxbc.stride(1)};
  const int64_t chunks = (L + kChunk - 1) / kChunk;
  TORCH_CHECK(states.numel() == 0 || (states.is_contiguous() && states.numel() == batch * chunks * HP * N),
              "ssd_bwd_xbc: states must be ssd_conv_fwd's (batch, chunks, G, N, H/G * P) or empty");
  return backward_all(s, o, batch, xbc.options().dtype(at::kFloat),
                      states.numel() ? states.data_ptr<float>() : nullptr);
}
