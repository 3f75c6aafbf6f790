// CPU kernel for the Mamba-1 selective scan, with the semantics of mamba_ssm's selective_scan_fn.
//
// Layout (prepared by zoo/ops/mamba1_scan.py; everything float32 and contiguous):
//   u, delta, z, dout : (batch, dim, L)
//   A                 : (dim, N)
//   B, C              : (batch, G, L, N)   (time-major so that the N lanes of one step are contiguous)
//   D, delta_bias     : (dim,)             (an empty tensor means "absent")
// Recurrence per channel: dt = softplus?(delta + bias); h = exp(dt*A)*h + dt*u*B_t; y = C_t.h + D*u;
// out = y * silu(z) when z is given.
//
// Work is split over channels with at::parallel_for (respects torch.set_num_threads); inside a channel
// the loop runs over time and is vectorised over the state dimension N (gcc turns expf into libmvec's
// vector exp under -ffast-math). The backward keeps no (L, N) history: it stores the state at the start of
// every block of kBlock steps during a forward recompute, then walks the blocks in reverse, recomputing
// the states of one block at a time (kBlock*N floats, in L1/L2).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <ATen/ops/from_blob.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "simd_math.h"

namespace {

using mambabench::fast_exp;
using mambabench::sigmoid;
using mambabench::softplus;

constexpr int64_t kBlock = 64;   // time tile (forward) and recompute block (backward)
constexpr int64_t kMaxN = 256;   // mamba_ssm's kernels also cap d_state at 256
constexpr int kLanes = 16;
// The backward's block order walks blocks of kLongBlock steps; the forward can keep the state entering each
// (`states`: (batch, dim / kVec, blocks, 16, kVec) floats, a quarter of u's size), so that order needs no
// states pass of its own. 64, 128, 256, 512 measured at L 4096 (states pass included): 126, 130, 137, 158 ms.
constexpr int64_t kLongBlock = 64;
inline int64_t long_blocks(int64_t L) { return (L + kLongBlock - 1) / kLongBlock; }

// Element (b, d, t) of a (batch, dim, L) tensor given by its strides: the forward accepts channel-major
// tensors and token-major views (the transpose of a Mamba layer's (batch, L, dim) activations) alike.
struct Strided {
  const float* p = nullptr;
  int64_t sb = 0, sd = 0, st = 0;
  const float* at(int64_t b, int64_t d, int64_t t) const { return p + b * sb + d * sd + t * st; }
};

Strided strided(const at::Tensor& t) {
  if (!t.numel()) return {};
  return {t.data_ptr<float>(), t.stride(0), t.stride(1), t.stride(2)};
}

struct Inputs {
  const float *u, *delta, *A, *B, *C, *D, *z, *bias;
  Strided su, sdelta, sz;
  int64_t batch, dim, L, N, G;
  bool softplus;
};

Inputs make_inputs(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                   const at::Tensor& B, const at::Tensor& C, const at::Tensor& D,
                   const at::Tensor& z, const at::Tensor& bias, bool delta_softplus) {
  Inputs in;
  in.u = u.data_ptr<float>();
  in.delta = delta.data_ptr<float>();
  in.A = A.data_ptr<float>();
  in.B = B.data_ptr<float>();
  in.C = C.data_ptr<float>();
  in.D = D.numel() ? D.data_ptr<float>() : nullptr;
  in.z = z.numel() ? z.data_ptr<float>() : nullptr;
  in.bias = bias.numel() ? bias.data_ptr<float>() : nullptr;
  in.su = strided(u);
  in.sdelta = strided(delta);
  in.sz = strided(z);
  in.batch = u.size(0);
  in.dim = u.size(1);
  in.L = u.size(2);
  in.N = A.size(1);
  in.G = B.size(1);
  in.softplus = delta_softplus;
  TORCH_CHECK(in.N <= kMaxN, "selective_scan: d_state must be <= ", kMaxN, ", got ", in.N);
  TORCH_CHECK(B.is_contiguous() && C.is_contiguous(), "selective_scan: B and C must be contiguous (b, G, L, N)");
  return in;
}

// Effective dt for steps [t0, t0+T) of one channel, vectorised over time (out of the recurrence).
inline void dt_tile(const Inputs& in, const float* delta, int64_t d, int64_t t0, int64_t T, float* dt) {
  const float bias = in.bias ? in.bias[d] : 0.f;
  if (in.softplus) {
#pragma omp simd
    for (int64_t i = 0; i < T; ++i) dt[i] = softplus(delta[t0 + i] + bias);
  } else {
#pragma omp simd
    for (int64_t i = 0; i < T; ++i) dt[i] = delta[t0 + i] + bias;
  }
}

// Forward of one channel over the time steps [t0, t0+T), vectorised over the state dimension (the
// fallback when channels cannot be grouped 16 to a vector; inputs are channel-major contiguous here).
// NT > 0 fixes N at compile time (the common d_state 16); NT == 0 handles any N. `h` carries the state.
template <int NT>
void forward_tile(const Inputs& in, int64_t b, int64_t d, int64_t t0, int64_t T, float* h, float* out) {
  const int64_t N = NT > 0 ? NT : in.N;
  constexpr int64_t NL = NT > 0 ? NT : kMaxN;
  const int64_t L = in.L;
  const int64_t g = d / (in.dim / in.G);
  const int64_t off = (b * in.dim + d) * L + t0;
  const float* u = in.u + off;
  const float* Bt = in.B + ((b * in.G + g) * L + t0) * N;
  const float* Ct = in.C + ((b * in.G + g) * L + t0) * N;
  alignas(64) float dt[kBlock];
  alignas(64) float y[kBlock];
  alignas(64) float hl[NL];  // local copies the compiler can keep in registers (h may alias anything)
  alignas(64) float a[NL];
  std::copy(h, h + N, hl);
  std::copy(in.A + d * N, in.A + (d + 1) * N, a);
  dt_tile(in, in.delta + (b * in.dim + d) * L, d, t0, T, dt);
  for (int64_t i = 0; i < T; ++i) {
    const float* Bp = Bt + i * N;
    const float* Cp = Ct + i * N;
    const float dti = dt[i], dtu = dti * u[i];
    float acc = 0.f;
#pragma omp simd reduction(+ : acc)
    for (int64_t n = 0; n < N; ++n) {
      hl[n] = fast_exp(dti * a[n]) * hl[n] + dtu * Bp[n];
      acc += hl[n] * Cp[n];
    }
    y[i] = acc;
  }
  std::copy(hl, hl + N, h);
  const float Dd = in.D ? in.D[d] : 0.f;
  float* o = out + off;
  if (in.z) {
    const float* z = in.z + off;
#pragma omp simd
    for (int64_t i = 0; i < T; ++i) o[i] = (y[i] + Dd * u[i]) * z[i] * sigmoid(z[i]);
  } else {
#pragma omp simd
    for (int64_t i = 0; i < T; ++i) o[i] = y[i] + Dd * u[i];
  }
}

// The (time, lane) tiles of 16 channels d0.. of sequence b for steps [t0, t0+T): effective dt and dt*u.
// Two loop orders, so that the inner loop always reads contiguous memory and vectorises: over channels
// for token-major inputs, over time for channel-major ones.
template <int W = kLanes>
inline void gather_lanes(const Inputs& in, int64_t b, int64_t d0, int64_t t0, int64_t T, float (*dt)[W],
                         float (*dtu)[W]) {
  if (in.sdelta.sd == 1 && in.su.sd == 1) {
    alignas(64) float bias[W] = {};
    if (in.bias) std::copy(in.bias + d0, in.bias + d0 + W, bias);
    for (int64_t i = 0; i < T; ++i) {
      const float* dl = in.sdelta.at(b, d0, t0 + i);
      const float* ul = in.su.at(b, d0, t0 + i);
      if (in.softplus) {
#pragma omp simd
        for (int c = 0; c < W; ++c) dt[i][c] = softplus(dl[c] + bias[c]);
      } else {
#pragma omp simd
        for (int c = 0; c < W; ++c) dt[i][c] = dl[c] + bias[c];
      }
#pragma omp simd
      for (int c = 0; c < W; ++c) dtu[i][c] = dt[i][c] * ul[c];
    }
    return;
  }
  alignas(64) float row[kBlock];
  for (int c = 0; c < W; ++c) {
    const float* dl = in.sdelta.at(b, d0 + c, 0);
    const float* ul = in.su.at(b, d0 + c, t0);
    if (in.sdelta.st == 1) {
      dt_tile(in, dl, d0 + c, t0, T, row);
    } else {
      for (int64_t i = 0; i < T; ++i) row[i] = dl[(t0 + i) * in.sdelta.st];
      for (int64_t i = 0; i < T; ++i) row[i] = in.softplus ? softplus(row[i] + (in.bias ? in.bias[d0 + c] : 0.f))
                                                           : row[i] + (in.bias ? in.bias[d0 + c] : 0.f);
    }
    for (int64_t i = 0; i < T; ++i) {
      dt[i][c] = row[i];
      dtu[i][c] = row[i] * ul[i * in.su.st];
    }
  }
}

// out = (y + D u) * silu(z) for the (time, lane) tile y of channels d0.. (out has the strides `so`), in
// the loop order that keeps the inner loop contiguous (see gather_lanes).
template <int W = kLanes>
inline void store_lanes(const Inputs& in, int64_t b, int64_t d0, int64_t t0, int64_t T, const float (*y)[W],
                        float* out, const Strided& so) {
  alignas(64) float Dl[W] = {};
  if (in.D) std::copy(in.D + d0, in.D + d0 + W, Dl);
  if (so.sd == 1 && in.su.sd == 1 && (!in.z || in.sz.sd == 1)) {
    for (int64_t i = 0; i < T; ++i) {
      const float* ul = in.su.at(b, d0, t0 + i);
      float* ol = out + b * so.sb + d0 + (t0 + i) * so.st;
      if (in.z) {
        const float* zl = in.sz.at(b, d0, t0 + i);
#pragma omp simd
        for (int c = 0; c < W; ++c) ol[c] = (y[i][c] + Dl[c] * ul[c]) * zl[c] * sigmoid(zl[c]);
      } else {
#pragma omp simd
        for (int c = 0; c < W; ++c) ol[c] = y[i][c] + Dl[c] * ul[c];
      }
    }
    return;
  }
  alignas(64) float row[kBlock];
  for (int c = 0; c < W; ++c) {
    const float* ul = in.su.at(b, d0 + c, t0);
    float* ol = out + b * so.sb + (d0 + c) * so.sd + t0 * so.st;
    for (int64_t i = 0; i < T; ++i) row[i] = y[i][c] + Dl[c] * ul[i * in.su.st];
    if (in.z) {
      const float* zl = in.sz.at(b, d0 + c, t0);
      if (in.sz.st == 1) {
#pragma omp simd
        for (int64_t i = 0; i < T; ++i) row[i] *= zl[i] * sigmoid(zl[i]);
      } else {
        for (int64_t i = 0; i < T; ++i) row[i] *= zl[i * in.sz.st] * sigmoid(zl[i * in.sz.st]);
      }
    }
    if (so.st == 1) {
      std::copy(row, row + T, ol);
    } else {
      for (int64_t i = 0; i < T; ++i) ol[i * so.st] = row[i];
    }
  }
}

// Prefetches part `part` of `parts` of the token rows t1..t1+T-1, channels c0..c0+W-1, of sequence b of the
// tensors `rows` (null: skipped) into L2 (prefetcht2). The forward's row passes read whole rows of delta, u and
// z once per time tile, after the tile's recurrence, which reads no memory beyond L2: issuing the next tile's
// rows a part after each channel block's recurrence keeps the memory busy while the recurrence runs (4-9% of
// the forward at L 4096, 0-4% at b64 L366 d1024, none at L 1024; prefetching into L1 evicted the recurrence's
// tiles and was 7-12% slower, and prefetching the output rows for writing did not help). Always inlined: gcc's
// IPA takes a function that only prefetches for one without effects and deletes the calls.
__attribute__((always_inline)) inline void prefetch_rows_part(const Strided* const rows[3], int64_t b, int64_t c0,
                                                              int64_t W, int64_t t1, int64_t T, int64_t part,
                                                              int64_t parts) {
  const int64_t per_row = W / 16;  // 64-byte lines per row (a last half line on AVX2 is left to the hardware)
  const int64_t total = T * 3 * per_row, lo = total * part / parts, hi = total * (part + 1) / parts;
  for (int64_t row = lo / per_row; row * per_row < hi; ++row) {  // row = token i * 3 + tensor a
    const Strided* r = rows[row % 3];
    if (!r) continue;
    const float* p = r->at(b, c0, t1 + row / 3);
    const int64_t from = std::max(lo - row * per_row, int64_t{0}), to = std::min(hi - row * per_row, per_row);
    for (int64_t line = from; line < to; ++line) __builtin_prefetch(p + line * 16, 0, 1);
  }
}

// Forward of 16 channels of one (batch, group) at once, one channel per SIMD lane: the state is
// h[n][lane], B_t[n] and C_t[n] are broadcast to all lanes, and y accumulates lane-wise, so no step
// needs a horizontal reduction. Portable version (gcc vectorises the lane loops).
template <int NT>
void forward_lanes(const Inputs& in, int64_t b, int64_t d0, float* out, const Strided& so) {
  const int64_t N = NT > 0 ? NT : in.N;
  constexpr int64_t NL = NT > 0 ? NT : kMaxN;
  const int64_t L = in.L;
  const int64_t g = d0 / (in.dim / in.G);
  const float* Bt = in.B + (b * in.G + g) * L * N;
  const float* Ct = in.C + (b * in.G + g) * L * N;
  alignas(64) float a[NL][kLanes];
  alignas(64) float h[NL][kLanes];
  alignas(64) float dt[kBlock][kLanes];
  alignas(64) float dtu[kBlock][kLanes];
  alignas(64) float y[kBlock][kLanes];
  for (int64_t n = 0; n < N; ++n)
    for (int c = 0; c < kLanes; ++c) {
      a[n][c] = in.A[(d0 + c) * N + n];
      h[n][c] = 0.f;
    }
  for (int64_t t0 = 0; t0 < L; t0 += kBlock) {
    const int64_t T = std::min(kBlock, L - t0);
    gather_lanes(in, b, d0, t0, T, dt, dtu);
    for (int64_t i = 0; i < T; ++i) {
      const float* Bp = Bt + (t0 + i) * N;
      const float* Cp = Ct + (t0 + i) * N;
      alignas(64) float acc[kLanes] = {};
      for (int64_t n = 0; n < N; ++n) {
        const float Bn = Bp[n], Cn = Cp[n];
#pragma omp simd
        for (int c = 0; c < kLanes; ++c) {
          h[n][c] = fast_exp(dt[i][c] * a[n][c]) * h[n][c] + dtu[i][c] * Bn;
          acc[c] += h[n][c] * Cn;
        }
      }
      for (int c = 0; c < kLanes; ++c) y[i][c] = acc[c];
    }
    store_lanes(in, b, d0, t0, T, y, out, so);
  }
}

// The same on `vfloat` (16 lanes with AVX-512, 8 with AVX2; simd_math.h) for d_state 16, over the channel
// blocks [blk0, blk1) of sequence b (block k = channels kVec*k ..). exp is computed as 2^(dt * A log2 e)
// with A pre-scaled once: ~13 vector instructions per kVec*16 state updates. Time tiles run outside and
// channel blocks inside; each block's 16 state vectors are saved between tiles. For token-major inputs (a
// Mamba layer's activations) the (time, channel) tiles of dt, dt*u and y are prepared and finished by passes
// over whole rows, which the hardware prefetcher streams; other layouts go through gather_lanes/store_lanes.
constexpr int64_t kLaneTile = 16;

void forward_vec(const Inputs& in, int64_t b, int64_t blk0, int64_t blk1, float* out, const Strided& so,
                 float* states) {
  using mambabench::kVec;
  using mambabench::vfloat;
  constexpr int N = 16;
  const int64_t L = in.L, nblk = blk1 - blk0, c0 = blk0 * kVec, W = nblk * kVec;
  const bool rows = in.su.sd == 1 && in.sdelta.sd == 1 && (!in.z || in.sz.sd == 1) && so.sd == 1;
  std::vector<vfloat> state(nblk * N, vfloat{});
  std::vector<vfloat> a2_all(nblk * N);
  for (int64_t k = 0; k < nblk; ++k)
    for (int n = 0; n < N; ++n)
      for (int c = 0; c < kVec; ++c)
        a2_all[k * N + n][c] = in.A[((blk0 + k) * kVec + c) * N + n] * 1.44269504088896341f;
  // (time, channel) tiles: ld = W when filled by row passes, kVec when filled per block (then longer
  // tiles, so each channel's gather reads whole cache lines of its time axis)
  const int64_t ld = rows ? W : kVec, tile = rows ? kLaneTile : kBlock;
  static_assert(kLongBlock % kLaneTile == 0 && kLongBlock % kBlock == 0, "tiles start at every state block");
  const int64_t nblocks = long_blocks(L);
  // this run's first item's entering states: item k, block j at ((k * nblocks) + j) * N vectors
  vfloat* kept = states ? reinterpret_cast<vfloat*>(states) + (b * (in.dim / kVec) + blk0) * nblocks * N : nullptr;
  std::vector<float> dt_buf(tile * ld), dtu_buf(tile * ld), y_buf(tile * ld);
  float *dt = dt_buf.data(), *dtu = dtu_buf.data(), *y = y_buf.data();
  // token-major rows the row passes read (delta, u, z): the next tile's are prefetched into L2 during this one
  const Strided* next_rows[3] = {&in.sdelta, &in.su, in.z ? &in.sz : nullptr};
  for (int64_t t0 = 0; t0 < L; t0 += tile) {
    const int64_t T = std::min(tile, L - t0);
    if (rows) {
      for (int64_t i = 0; i < T; ++i) {
        const float* dl = in.sdelta.at(b, c0, t0 + i);
        const float* ul = in.su.at(b, c0, t0 + i);
        float* dr = dt + i * W;
        float* dur = dtu + i * W;
        const float* bias = in.bias ? in.bias + c0 : nullptr;
        for (int64_t c = 0; c < W; c += kVec) {  // W: whole vectors
          vfloat v = mambabench::vload(dl + c);
          if (bias) v += mambabench::vload(bias + c);
          if (in.softplus) v = mambabench::vsoftplus(v);  // inline: libmvec's log1pf was ~10% of this kernel
          mambabench::vstore(dr + c, v);
          mambabench::vstore(dur + c, v * mambabench::vload(ul + c));
        }
      }
    }
    for (int64_t k = 0; k < nblk; ++k) {
      const int64_t d0 = (blk0 + k) * kVec;
      const int64_t g = d0 / (in.dim / in.G);
      const float* Bt = in.B + ((b * in.G + g) * L + t0) * N;
      const float* Ct = in.C + ((b * in.G + g) * L + t0) * N;
      const vfloat* a2 = a2_all.data() + k * N;
      const int64_t col = rows ? k * kVec : 0;
      if (!rows)
        gather_lanes<kVec>(in, b, d0, t0, T, reinterpret_cast<float(*)[kVec]>(dt),
                           reinterpret_cast<float(*)[kVec]>(dtu));
      vfloat h[N];
      for (int n = 0; n < N; ++n) h[n] = state[k * N + n];
      if (kept && t0 % kLongBlock == 0)
        std::copy(h, h + N, kept + (k * nblocks + t0 / kLongBlock) * N);
      for (int64_t i = 0; i < T; ++i) {
        const float* Bp = Bt + i * N;
        const float* Cp = Ct + i * N;
        const vfloat dtv = mambabench::vload(dt + i * ld + col);
        const vfloat dtuv = mambabench::vload(dtu + i * ld + col);
        vfloat acc{};
#pragma GCC unroll 16
        for (int n = 0; n < N; ++n) {
          h[n] = mambabench::vexp2(dtv * a2[n]) * h[n] + dtuv * Bp[n];
          acc += h[n] * Cp[n];
        }
        mambabench::vstore(y + i * ld + col, acc);
      }
      for (int n = 0; n < N; ++n) state[k * N + n] = h[n];
      if (!rows) store_lanes<kVec>(in, b, d0, t0, T, reinterpret_cast<const float(*)[kVec]>(y), out, so);
      if (rows && t0 + tile < L)
        prefetch_rows_part(next_rows, b, c0, W, t0 + tile, std::min(tile, L - t0 - tile), k, nblk);
    }
    if (rows) {
      for (int64_t i = 0; i < T; ++i) {
        const float* ul = in.su.at(b, c0, t0 + i);
        const float* yr = y + i * W;
        const float* D = in.D ? in.D + c0 : nullptr;
        float* ol = out + b * so.sb + c0 + (t0 + i) * so.st;
        if (in.z) {
          const float* zl = in.sz.at(b, c0, t0 + i);
          for (int64_t c = 0; c < W; c += kVec) {  // y * silu(z), the exp inline
            const vfloat zv = mambabench::vload(zl + c);
            vfloat yv = mambabench::vload(yr + c);
            if (D) yv += mambabench::vload(D + c) * mambabench::vload(ul + c);
            mambabench::vstore(ol + c, yv * zv * mambabench::vsigmoid(zv));
          }
        } else {
#pragma omp simd
          for (int64_t c = 0; c < W; ++c) ol[c] = yr[c] + (D ? D[c] : 0.f) * ul[c];
        }
      }
    }
  }
}

// Forward of the channels [lo, hi) (flattened batch*dim), each over the whole sequence: B and C are
// then read in order and the hardware prefetcher keeps up (a time-tiled order that reuses a B/C tile
// across channels measured slower here).
template <int NT>
void forward_range(const Inputs& in, int64_t lo, int64_t hi, float* out) {
  std::vector<float> state(in.N);
  for (int64_t item = lo; item < hi; ++item) {
    std::fill(state.begin(), state.end(), 0.f);
    for (int64_t t0 = 0; t0 < in.L; t0 += kBlock)
      forward_tile<NT>(in, item / in.dim, item % in.dim, t0, std::min(kBlock, in.L - t0), state.data(), out);
  }
}

template <int NT>
void backward_channel(const Inputs& in, const float* dout, int64_t b, int64_t d, float* du, float* ddelta,
                      float* dA, float* dB, float* dC, float* dD, float* dz, float* dbias,
                      std::vector<float>& starts, std::vector<float>& states) {
  const int64_t N = NT > 0 ? NT : in.N;
  const int64_t L = in.L;
  const int64_t g = d / (in.dim / in.G);
  const int64_t off = (b * in.dim + d) * L;
  const float* u = in.u + off;
  const float* delta = in.delta + off;
  const float* z = in.z ? in.z + off : nullptr;
  const float* go = dout + off;
  const float* Bt = in.B + (b * in.G + g) * L * N;
  const float* Ct = in.C + (b * in.G + g) * L * N;
  float* dBt = dB + (b * in.G + g) * L * N;  // this thread's private accumulation buffer
  float* dCt = dC + (b * in.G + g) * L * N;
  const float Dd = in.D ? in.D[d] : 0.f;
  const float bias = in.bias ? in.bias[d] : 0.f;
  const float* a = in.A + d * N;
  const int64_t nblocks = (L + kBlock - 1) / kBlock;
  alignas(64) float h[kMaxN];
  alignas(64) float dh[kMaxN];
  alignas(64) float dAacc[kMaxN];
  alignas(64) float dt[kBlock];
  alignas(64) float gy[kBlock];
  alignas(64) float sum_dhB[kBlock];
  alignas(64) float ddt[kBlock];

  // Forward recompute, keeping only the state entering every block.
  starts.resize(nblocks * N);
  std::fill(h, h + N, 0.f);
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    const int64_t t0 = blk * kBlock, T = std::min(kBlock, L - t0);
    std::copy(h, h + N, starts.data() + blk * N);
    dt_tile(in, delta, d, t0, T, dt);
    for (int64_t i = 0; i < T; ++i) {
      const float dti = dt[i], dtu = dti * u[t0 + i];
      const float* Bp = Bt + (t0 + i) * N;
#pragma omp simd
      for (int64_t n = 0; n < N; ++n) h[n] = fast_exp(dti * a[n]) * h[n] + dtu * Bp[n];
    }
  }

  std::fill(dh, dh + N, 0.f);
  std::fill(dAacc, dAacc + N, 0.f);
  states.resize((kBlock + 1) * N);
  float dD_acc = 0.f, dbias_acc = 0.f;
  for (int64_t blk = nblocks - 1; blk >= 0; --blk) {
    const int64_t t0 = blk * kBlock, T = std::min(kBlock, L - t0);
    dt_tile(in, delta, d, t0, T, dt);
    // Row i+1 of `states` is h after step t0+i; row 0 is the state entering the block.
    std::copy(starts.data() + blk * N, starts.data() + (blk + 1) * N, states.data());
    for (int64_t i = 0; i < T; ++i) {
      const float dti = dt[i], dtu = dti * u[t0 + i];
      const float* Bp = Bt + (t0 + i) * N;
      const float* prev = states.data() + i * N;
      float* cur = states.data() + (i + 1) * N;
#pragma omp simd
      for (int64_t n = 0; n < N; ++n) cur[n] = fast_exp(dti * a[n]) * prev[n] + dtu * Bp[n];
    }
    // Gradient reaching y (through the silu(z) gate when present).
    if (z) {
      for (int64_t i = 0; i < T; ++i) {
        const float* ht = states.data() + (i + 1) * N;
        const float* Cp = Ct + (t0 + i) * N;
        float acc = 0.f;
#pragma omp simd reduction(+ : acc)
        for (int64_t n = 0; n < N; ++n) acc += Cp[n] * ht[n];
        gy[i] = acc;  // y without the D term, completed below
      }
#pragma omp simd
      for (int64_t i = 0; i < T; ++i) {
        const float zi = z[t0 + i], s = sigmoid(zi), y = gy[i] + Dd * u[t0 + i], g_out = go[t0 + i];
        dz[off + t0 + i] = g_out * y * s * (1.f + zi * (1.f - s));
        gy[i] = g_out * zi * s;
      }
    } else {
      std::copy(go + t0, go + t0 + T, gy);
    }
    for (int64_t i = T - 1; i >= 0; --i) {
      const float* ht = states.data() + (i + 1) * N;
      const float* hprev = states.data() + i * N;
      const float* Bp = Bt + (t0 + i) * N;
      const float* Cp = Ct + (t0 + i) * N;
      float* dBp = dBt + (t0 + i) * N;
      float* dCp = dCt + (t0 + i) * N;
      const float dti = dt[i], gyi = gy[i], dtu = dti * u[t0 + i];
      float sB = 0.f, sA = 0.f;
#pragma omp simd reduction(+ : sB, sA)
      for (int64_t n = 0; n < N; ++n) {
        dCp[n] += gyi * ht[n];
        const float dhn = dh[n] + gyi * Cp[n];
        const float e = fast_exp(dti * a[n]);
        dBp[n] += dhn * dtu;
        sB += dhn * Bp[n];
        const float de = dhn * hprev[n] * e;  // d loss / d(dt * a[n])
        sA += de * a[n];
        dAacc[n] += de * dti;
        dh[n] = dhn * e;
      }
      sum_dhB[i] = sB;
      ddt[i] = sA;
    }
#pragma omp simd reduction(+ : dD_acc, dbias_acc)
    for (int64_t i = 0; i < T; ++i) {
      const float ut = u[t0 + i];
      dD_acc += gy[i] * ut;
      du[off + t0 + i] = gy[i] * Dd + dt[i] * sum_dhB[i];
      float draw = ddt[i] + ut * sum_dhB[i];
      if (in.softplus) {
        const float v = delta[t0 + i] + bias;
        draw = v <= 20.f ? draw * sigmoid(v) : draw;
      }
      ddelta[off + t0 + i] = draw;
      dbias_acc += draw;
    }
  }
  for (int64_t n = 0; n < N; ++n) dA[d * N + n] += dAacc[n];
  dD[d] += dD_acc;
  dbias[d] += dbias_acc;
}

// ---- Backward on vectors of channels (the forward's blocking) ----
// One item = kVec channels of one sequence, one channel per lane, d_state 16 (state n is vector h[n]).
// Per item: (1) (time, lane) tiles of dt, dt*u, u, softplus' and the incoming gradient; (2) the state
// entering every recompute block, from a states-only forward pass (skipped when the sequence is one block:
// the training shapes); (3) blocks in reverse: recompute the block's states and decays exp(dt A) into a
// buffer (one exp per update in the whole backward), then walk it backwards. Gradients of B and C are sums
// over channels: they accumulate lane-wise into an (L, N, kVec) buffer shared by the items of one (sequence,
// group) that a thread runs, and are summed over lanes once per run, so no step needs a horizontal reduction.
//
// Two orders. The block order (one group) runs time blocks of kLongBlock steps outermost and all the thread's
// items of the sequence inside (as the forward does): the block's tiles are read from whole token-major rows,
// and the lane-wise dB/dC buffers, the recomputed states and decays stay block-sized (4 x 128 KB with
// AVX-512), in L2. Item by item they are (L, N, kVec) floats each, 4 MB at L 4096, read and written back once
// per item from L3: 60% of the backward there. The block order needs the state entering every block: the
// forward's `states` when it kept them (the op's training path: then the block order runs at every L), else a
// states pass (a forward's worth of exps), which pays from L 2048 (1.9x faster there with AVX-512, 1.3x with
// AVX2); shorter sequences without kept states run item by item, whose states pass skips the first 512 steps.
constexpr int64_t kBwdBlock = 512;   // item order: hs + es = 2 * 512 * 16 * kVec floats per thread
constexpr int64_t kLongFrom = 2048;  // the shortest sequence run in block order without kept states

// (time, lane) tiles of a chunk of consecutive items of one sequence over the steps [t0, t0 + T): array k
// holds item k's (T, kVec) tile at offset k * T * kVec. Loading a chunk at once reads each token-major row as
// one contiguous run of chunk * kVec channels: per item, the rows of 16 floats lie a whole row apart (8 KB at
// d_inner 2048), one page each, and the page walks cost as much as the scan.
struct Tiles {
  std::vector<float> dt, dtu, u, dsp, go, z, gy, du, ddelta, dz;
  void resize(int64_t n) {
    for (auto* v : {&dt, &dtu, &u, &dsp, &go, &z, &gy, &du, &ddelta, &dz}) v->resize(n);
  }
};
constexpr int64_t kChunkItems = 8;           // items loaded together (at most; one-block sequences)
constexpr int64_t kChunkFloats = 1 << 18;    // and at most this many floats per tile array (1 MB)

// Visits (t in [t0, t0 + T), lane offset ch in [0, nch), tile index) in the order that walks a (b, d, t)
// tensor with strides `st` contiguously: time outer for token-major tensors, channels outer for channel-major.
template <class F>
inline void for_tile_elements(const Strided& st, int64_t t0, int64_t T, int64_t nch, F&& f) {
  using mambabench::kVec;
  auto index = [&](int64_t t, int64_t ch) { return ((ch / kVec) * T + (t - t0)) * kVec + ch % kVec; };
  if (st.sd == 1) {
    for (int64_t t = t0; t < t0 + T; ++t)
      for (int64_t ch = 0; ch < nch; ++ch) f(t, ch, index(t, ch));
  } else {
    for (int64_t ch = 0; ch < nch; ++ch)
      for (int64_t t = t0; t < t0 + T; ++t) f(t, ch, index(t, ch));
  }
}

// Loads the tiles of channels [c0, c0 + nch) of sequence b, steps [t0, t0 + T), with dt = softplus(delta +
// bias), its derivative and dt * u (vectorised: per-element scalar transcendentals would cost more than the
// scan). Token-major inputs in one pass, each vector finished in registers; other layouts copied first, then
// finished by a pass over the tiles. `states_only`: dt and dt*u only (the states pass). The tiles' pointers are
// held in locals: through s.dt[k] and the like, every store would reload them (a float store may alias them).
void load_tiles(const Inputs& in, const Strided& go, int64_t b, int64_t c0, int64_t nch, int64_t t0, int64_t T,
                Tiles& s, bool states_only = false) {
  using mambabench::kVec;
  using mambabench::vfloat;
  using mambabench::vload;
  using mambabench::vstore;
  const int64_t n = nch * T;
  s.resize(n);
  float *dt = s.dt.data(), *dtu = s.dtu.data(), *dsp = s.dsp.data(), *u = s.u.data(), *g = s.go.data();
  float* z = s.z.data();
  const bool softplus = in.softplus;
  // dt from the raw delta + bias, its derivative d softplus / d v = sigmoid(v) (1 above the threshold 20, where
  // sigmoid rounds to 1 in float32), dt * u
  auto finish = [&](int64_t k, vfloat raw, vfloat uv) {
    vfloat d = raw, slope = mambabench::vsplat(1.f);
    if (softplus) mambabench::vsoftplus_sigmoid(raw, d, slope);
    if (!states_only) vstore(dsp + k, slope);
    vstore(dt + k, d);
    vstore(dtu + k, d * uv);
  };
  const bool rows = in.su.sd == 1 && in.sdelta.sd == 1 && go.sd == 1 && (!in.z || in.sz.sd == 1);
  if (rows) {  // token-major: kVec channels of one token are one vector
    const float* bias = in.bias ? in.bias + c0 : nullptr;
    for (int64_t t = t0; t < t0 + T; ++t) {
      // this token's rows from channel c0
      const float *drow = in.sdelta.at(b, c0, t), *urow = in.su.at(b, c0, t);
      const float* grow = states_only ? nullptr : go.at(b, c0, t);
      const float* zrow = in.z && !states_only ? in.sz.at(b, c0, t) : nullptr;
      for (int64_t ch = 0; ch < nch; ch += kVec) {
        const int64_t k = ((ch / kVec) * T + (t - t0)) * kVec;
        const vfloat raw = vload(drow + ch) + (bias ? vload(bias + ch) : vfloat{});
        const vfloat uv = vload(urow + ch);
        vstore(u + k, uv);
        finish(k, raw, uv);
        if (states_only) continue;
        vstore(g + k, vload(grow + ch));
        vstore(z + k, zrow ? vload(zrow + ch) : vfloat{});
      }
    }
    return;
  }
  for_tile_elements(in.su, t0, T, nch, [&](int64_t t, int64_t ch, int64_t k) {
    const int64_t d = c0 + ch;
    dt[k] = *in.sdelta.at(b, d, t) + (in.bias ? in.bias[d] : 0.f);  // raw, finished below
    u[k] = *in.su.at(b, d, t);
    if (states_only) return;
    g[k] = *go.at(b, d, t);
    z[k] = in.z ? *in.sz.at(b, d, t) : 0.f;
  });
  for (int64_t k = 0; k < n; k += kVec) finish(k, vload(dt + k), vload(u + k));  // n: whole vectors
}

// Writes du, ddelta (and dz) of the chunk's steps [t0, t0 + T) into tensors with u's strides `so`.
void store_tiles(const Inputs& in, const Strided& so, const Strided& sdz, int64_t b, int64_t c0, int64_t nch,
                 int64_t t0, int64_t T, const Tiles& s, float* du, float* ddelta, float* dz) {
  using mambabench::kVec;
  using mambabench::vload;
  using mambabench::vstore;
  auto tile = [&](int64_t t, int64_t ch) { return ((ch / kVec) * T + (t - t0)) * kVec; };
  const float *tdu = s.du.data(), *tdd = s.ddelta.data(), *tdz = s.dz.data();  // locals: see load_tiles
  if (so.sd == 1) {  // token-major
    for (int64_t t = t0; t < t0 + T; ++t)
      for (int64_t ch = 0; ch < nch; ch += kVec) {
        const int64_t k = tile(t, ch), o = b * so.sb + (c0 + ch) + t * so.st;
        vstore(du + o, vload(tdu + k));
        vstore(ddelta + o, vload(tdd + k));
      }
  } else {
    for_tile_elements(so, t0, T, nch, [&](int64_t t, int64_t ch, int64_t k) {
      const int64_t o = b * so.sb + (c0 + ch) * so.sd + t * so.st;
      du[o] = tdu[k];
      ddelta[o] = tdd[k];
    });
  }
  if (!dz) return;
  if (sdz.sd == 1) {  // dz has its own strides: u's layout, or a slice of the caller's buffer
    for (int64_t t = t0; t < t0 + T; ++t)
      for (int64_t ch = 0; ch < nch; ch += kVec)
        vstore(dz + b * sdz.sb + (c0 + ch) + t * sdz.st, vload(tdz + tile(t, ch)));
    return;
  }
  for_tile_elements(sdz, t0, T, nch, [&](int64_t t, int64_t ch, int64_t k) {
    dz[b * sdz.sb + (c0 + ch) * sdz.sd + t * sdz.st] = tdz[k];
  });
}

// dst[k] += the sum over lanes of src[k], k < n: lane-wise dB/dC accumulators into a thread's (L, N) sums.
inline void add_lane_sums(const mambabench::vfloat* src, float* dst, int64_t n) {
  for (int64_t k = 0; k < n; ++k) dst[k] += mambabench::vsum(src[k]);
}

// One item's constants: A, A log2 e, D.
struct ItemParams {
  mambabench::vfloat a[16], a2[16], D{};
  ItemParams(const Inputs& in, int64_t d0) {
    using mambabench::kVec;
    for (int n = 0; n < 16; ++n)
      for (int c = 0; c < kVec; ++c) {
        a[n][c] = in.A[(d0 + c) * 16 + n];
        a2[n][c] = a[n][c] * 1.44269504088896341f;
      }
    if (in.D)
      for (int c = 0; c < kVec; ++c) D[c] = in.D[d0 + c];
  }
};
// What an item's backward carries from block to block: dh, the dA accumulators, dD and dbias.
struct Carry {
  mambabench::vfloat dh[16] = {}, dA[16] = {}, dD{}, dbias{};
};

// Adds an item's accumulated dA, dD, dbias (channels d0..) into a thread's sums.
void finish_item(const Carry& c, int64_t d0, float* dA, float* dD, float* dbias) {
  using mambabench::kVec;
  for (int l = 0; l < kVec; ++l) {
    const int64_t d = d0 + l;
    for (int n = 0; n < 16; ++n) dA[d * 16 + n] += c.dA[n][l];
    dD[d] += c.dD[l];
    dbias[d] += c.dbias[l];
  }
}

// Advances state h through T steps (states only): tiles dt, dtu at step 0 of the range, B at its step 0.
inline void advance_states(const ItemParams& p, const float* tdt, const float* tdtu, const float* Bt, int64_t T,
                           mambabench::vfloat* h) {
  using mambabench::kVec;
  using mambabench::vload;
  for (int64_t i = 0; i < T; ++i) {
    const mambabench::vfloat dtv = vload(tdt + i * kVec), dtuv = vload(tdtu + i * kVec);
    const float* Bp = Bt + i * 16;
#pragma GCC unroll 16
    for (int n = 0; n < 16; ++n) h[n] = mambabench::vexp2(dtv * p.a2[n]) * h[n] + dtuv * Bp[n];
  }
}

// The backward of one item over one block of T steps that starts in state `h0`: every pointer is at the
// block's first step (tiles t*, B/C rows Bt/Ct, lane-wise dB/dC rows dBl/dCl); `c` carries dh and the sums.
void backward_block(const Inputs& in, const ItemParams& p, const float* Bt, const float* Ct, const float* tdt,
                    const float* tdtu, const float* tu, const float* tgo, const float* tz, const float* tdsp,
                    float* tgy, float* tdu, float* tdd, float* tdz, int64_t T, const mambabench::vfloat* h0,
                    Carry& c, mambabench::vfloat* hs, mambabench::vfloat* es, mambabench::vfloat* dBl,
                    mambabench::vfloat* dCl) {
  using mambabench::kVec;
  using mambabench::vfloat;
  using mambabench::vload;
  using mambabench::vstore;
  constexpr int N = 16;
  // recompute: hs[i + 1] = state after step i (hs[0] entering the block), es[i] = exp(dt A)
  vfloat h[N];
  for (int n = 0; n < N; ++n) h[n] = hs[n] = h0[n];
  for (int64_t i = 0; i < T; ++i) {
    const vfloat dtv = vload(tdt + i * kVec), dtuv = vload(tdtu + i * kVec);
    const float* Bp = Bt + i * N;
    const float* Cp = Ct + i * N;
    vfloat acc{};
#pragma GCC unroll 16
    for (int n = 0; n < N; ++n) {
      const vfloat e = mambabench::vexp2(dtv * p.a2[n]);
      h[n] = e * h[n] + dtuv * Bp[n];
      acc += h[n] * Cp[n];
      es[i * N + n] = e;
      hs[(i + 1) * N + n] = h[n];
    }
    // the gradient reaching y (through the silu(z) gate when present), dz and dD
    const vfloat g_out = vload(tgo + i * kVec), u = vload(tu + i * kVec);
    vfloat gy = g_out;
    if (in.z) {
      const vfloat z = vload(tz + i * kVec), sg = mambabench::vsigmoid(z), y = acc + p.D * u;
      vstore(tdz + i * kVec, g_out * y * sg * (1.f + z * (1.f - sg)));
      gy = g_out * z * sg;
    }
    vstore(tgy + i * kVec, gy);
    c.dD += gy * u;
    vfloat* dCp = dCl + i * N;  // dC_t[n] = sum over channels of gy * h_t[n], while h_t is in registers
#pragma GCC unroll 16
    for (int n = 0; n < N; ++n) dCp[n] += gy * h[n];
  }
  vfloat dh[N], dAacc[N];
  for (int n = 0; n < N; ++n) dh[n] = c.dh[n], dAacc[n] = c.dA[n];
  vfloat dbacc = c.dbias;
  for (int64_t i = T - 1; i >= 0; --i) {
    const vfloat gy = vload(tgy + i * kVec), dtv = vload(tdt + i * kVec), dtuv = vload(tdtu + i * kVec);
    const float* Bp = Bt + i * N;
    const float* Cp = Ct + i * N;
    vfloat* dBp = dBl + i * N;
    const vfloat* hprev = hs + i * N;
    const vfloat* e = es + i * N;
    vfloat sB{}, sA{};
#pragma GCC unroll 16
    for (int n = 0; n < N; ++n) {
      const vfloat dhn = dh[n] + gy * Cp[n];
      dBp[n] += dhn * dtuv;
      sB += dhn * Bp[n];
      dh[n] = dhn * e[n];
      const vfloat de = dh[n] * hprev[n];  // dhn e h_{t-1} = d loss / d(dt * a[n]), one multiplication
      sA += de * p.a[n];
      dAacc[n] += de * dtv;
    }
    const vfloat u = vload(tu + i * kVec);
    vstore(tdu + i * kVec, gy * p.D + dtv * sB);
    const vfloat draw = (sA + u * sB) * vload(tdsp + i * kVec);
    vstore(tdd + i * kVec, draw);
    dbacc += draw;
  }
  for (int n = 0; n < N; ++n) c.dh[n] = dh[n], c.dA[n] = dAacc[n];
  c.dbias = dbacc;
}

// The scan part of one item (channels d0.. of sequence b) whose whole-sequence tiles start at offset `off`
// of `s` (the item-by-item order; any L, any groups).
void backward_vec(const Inputs& in, int64_t b, int64_t d0, Tiles& s, int64_t off,
                  std::vector<mambabench::vfloat>& starts, std::vector<mambabench::vfloat>& hs,
                  std::vector<mambabench::vfloat>& es, mambabench::vfloat* dBl, mambabench::vfloat* dCl,
                  float* dA, float* dD, float* dbias) {
  using mambabench::kVec;
  constexpr int N = 16;
  const int64_t L = in.L;
  const int64_t g = d0 / (in.dim / in.G);
  const float* Bt = in.B + (b * in.G + g) * L * N;
  const float* Ct = in.C + (b * in.G + g) * L * N;
  const ItemParams p(in, d0);
  const float *tdt = s.dt.data() + off, *tdtu = s.dtu.data() + off;
  // (2) the state entering each block
  const int64_t nblocks = (L + kBwdBlock - 1) / kBwdBlock;
  starts.assign(nblocks * N, mambabench::vfloat{});
  for (int64_t blk = 0; blk + 1 < nblocks; ++blk) {
    std::copy(starts.begin() + blk * N, starts.begin() + (blk + 1) * N, starts.begin() + (blk + 1) * N);
    const int64_t t0 = blk * kBwdBlock;
    advance_states(p, tdt + t0 * kVec, tdtu + t0 * kVec, Bt + t0 * N, kBwdBlock, starts.data() + (blk + 1) * N);
  }
  // (3) blocks in reverse
  const int64_t Tb = std::min(kBwdBlock, L);
  hs.resize((Tb + 1) * N);
  es.resize(Tb * N);
  Carry c;
  for (int64_t blk = nblocks - 1; blk >= 0; --blk) {
    const int64_t t0 = blk * kBwdBlock, T = std::min(kBwdBlock, L - t0), o = off + t0 * kVec;
    backward_block(in, p, Bt + t0 * N, Ct + t0 * N, s.dt.data() + o, s.dtu.data() + o, s.u.data() + o,
                   s.go.data() + o, s.z.data() + o, s.dsp.data() + o, s.gy.data() + o, s.du.data() + o,
                   s.ddelta.data() + o, s.dz.data() + o, T, starts.data() + blk * N, c, hs.data(), es.data(),
                   dBl + t0 * N, dCl + t0 * N);
  }
  finish_item(c, d0, dA, dD, dbias);
}

// The long-sequence order (see above) for the channel blocks [blk0, blk1) of sequence b, one group: dB, dC
// are this thread's (L, N) sums for the sequence.
void backward_long(const Inputs& in, const Strided& go, const Strided& so, const Strided& sdz, int64_t b,
                   int64_t blk0, int64_t blk1, const float* kept, float* du, float* ddelta, float* dz, float* dB,
                   float* dC, float* dA, float* dD, float* dbias) {
  using mambabench::kVec;
  using mambabench::vfloat;
  constexpr int N = 16;
  const int64_t L = in.L, items = blk1 - blk0, c0 = blk0 * kVec, nch = items * kVec;
  const int64_t nblocks = long_blocks(L);
  const float* Bt = in.B + b * L * N;
  const float* Ct = in.C + b * L * N;
  std::vector<ItemParams> params;
  params.reserve(items);
  for (int64_t k = 0; k < items; ++k) params.emplace_back(in, c0 + k * kVec);
  thread_local Tiles s;
  thread_local std::vector<vfloat> starts, hs, es, dBl, dCl;
  // the state entering every block, per item (item k, block j at (k * nblocks + j) * N): the forward's, or a
  // states-only pass, blocks outer
  if (!kept) starts.assign(items * nblocks * N, vfloat{});
  const vfloat* entering = kept ? reinterpret_cast<const vfloat*>(kept) + (b * (in.dim / kVec) + blk0) * nblocks * N
                                : starts.data();
  for (int64_t blk = 0; !kept && blk + 1 < nblocks; ++blk) {
    const int64_t t0 = blk * kLongBlock;
    load_tiles(in, go, b, c0, nch, t0, kLongBlock, s, /*states_only=*/true);
    for (int64_t k = 0; k < items; ++k) {
      vfloat* h = starts.data() + (k * nblocks + blk + 1) * N;
      std::copy(h - N, h, h);
      advance_states(params[k], s.dt.data() + k * kLongBlock * kVec, s.dtu.data() + k * kLongBlock * kVec,
                     Bt + t0 * N, kLongBlock, h);
    }
  }
  hs.resize((kLongBlock + 1) * N);
  es.resize(kLongBlock * N);
  dBl.resize(kLongBlock * N);
  dCl.resize(kLongBlock * N);
  std::vector<Carry> carry(items);
  for (int64_t blk = nblocks - 1; blk >= 0; --blk) {
    const int64_t t0 = blk * kLongBlock, T = std::min(kLongBlock, L - t0);
    load_tiles(in, go, b, c0, nch, t0, T, s);
    std::fill(dBl.begin(), dBl.begin() + T * N, vfloat{});
    std::fill(dCl.begin(), dCl.begin() + T * N, vfloat{});
    for (int64_t k = 0; k < items; ++k) {
      const int64_t o = k * T * kVec;
      backward_block(in, params[k], Bt + t0 * N, Ct + t0 * N, s.dt.data() + o, s.dtu.data() + o, s.u.data() + o,
                     s.go.data() + o, s.z.data() + o, s.dsp.data() + o, s.gy.data() + o, s.du.data() + o,
                     s.ddelta.data() + o, s.dz.data() + o, T, entering + (k * nblocks + blk) * N, carry[k],
                     hs.data(), es.data(), dBl.data(), dCl.data());
    }
    add_lane_sums(dBl.data(), dB + t0 * N, T * N);
    add_lane_sums(dCl.data(), dC + t0 * N, T * N);
    store_tiles(in, so, sdz, b, c0, nch, t0, T, s, du, ddelta, dz);
  }
  for (int64_t k = 0; k < items; ++k) finish_item(carry[k], c0 + k * kVec, dA, dD, dbias);
}

}  // namespace

// Returns [out, states]: states (batch, dim, blocks, 16) floats hold the state entering every kLongBlock steps
// in the backward's own layout (see kLongBlock) when `save_states` (the vector kernel, one group), else empty.
std::vector<at::Tensor> selective_scan_fwd(at::Tensor u, at::Tensor delta, at::Tensor A, at::Tensor B, at::Tensor C,
                                           at::Tensor D, at::Tensor z, at::Tensor delta_bias, bool delta_softplus,
                                           bool portable, bool save_states) {
  const int64_t batch = u.size(0), dim = u.size(1), L = u.size(2), G = B.size(1);
  // Lane-parallel blocks of 16 channels need dim/G to be a multiple of 16 (true for every model here)
  // and take u, delta, z with any strides; otherwise one contiguous channel at a time.
  const bool lanes = (dim / G) % kLanes == 0;
  if (!lanes) {
    u = u.contiguous(), delta = delta.contiguous(), z = z.contiguous();
  }
  const Inputs in = make_inputs(u, delta, A, B, C, D, z, delta_bias, delta_softplus);
  // the output takes u's layout: token-major (a view of (batch, L, dim)) or channel-major
  const bool token_major = lanes && u.stride(1) == 1 && L > 1;
  auto out = token_major ? at::empty({batch, L, dim}, u.options()).transpose(1, 2)
                         : at::empty({batch, dim, L}, u.options());
  float* o = out.data_ptr<float>();
  const Strided so{o, out.stride(0), out.stride(1), out.stride(2)};
  const int64_t items = batch * dim / (lanes ? kLanes : 1);
  // the vector kernel: d_state 16 and channel blocks of kVec (16 with AVX-512, 8 with AVX2) in every group;
  // `portable` (the reference path) takes the lane kernel below, gcc's own vectorisation
  const bool vec = !portable && in.N == 16 && (dim / G) % mambabench::kVec == 0;
  TORCH_CHECK(!save_states || (vec && G == 1), "selective_scan_fwd: save_states needs d_state 16 and one group");
  auto states = save_states ? at::empty({batch, dim, long_blocks(L), 16}, u.options()) : at::empty({0}, u.options());
  float* kept = save_states ? states.data_ptr<float>() : nullptr;
  if (vec) {
    const int64_t per_batch = dim / mambabench::kVec;
    at::parallel_for(0, batch * per_batch, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t item = lo; item < hi;) {  // runs of channel blocks within one sequence
        const int64_t b = item / per_batch, end = std::min(hi, (b + 1) * per_batch);
        forward_vec(in, b, item % per_batch, item % per_batch + (end - item), o, so, kept);
        item = end;
      }
    });
    return {out, states};
  }
  at::parallel_for(0, items, 1, [&](int64_t lo, int64_t hi) {
    if (lanes) {
      const int64_t per_batch = dim / kLanes;
      for (int64_t item = lo; item < hi; ++item) {
        const int64_t b = item / per_batch, d0 = (item % per_batch) * kLanes;
        if (in.N == 16)
          forward_lanes<16>(in, b, d0, o, so);
        else
          forward_lanes<0>(in, b, d0, o, so);
      }
    } else if (in.N == 16) {
      forward_range<16>(in, lo, hi, o);
    } else {
      forward_range<0>(in, lo, hi, o);
    }
  });
  return {out, states};
}

// Returns du, ddelta, dA, dB, dC, dD, dz, ddelta_bias (dB, dC in the kernel's (batch, G, L, N) layout).
// dz is written into dz_out when it is given (not empty; the vector kernel only): (batch, dim, L) float32 with
// any strides, e.g. the z half of a Mamba mixer's (batch, L, 2 dim) input gradient, so no concatenation follows.
// `states`: the forward's kept states (selective_scan_fwd with save_states) or empty.
std::vector<at::Tensor> selective_scan_bwd(at::Tensor dout, at::Tensor u, at::Tensor delta, at::Tensor A,
                                           at::Tensor B, at::Tensor C, at::Tensor D, at::Tensor z,
                                           at::Tensor delta_bias, bool delta_softplus, at::Tensor dz_out,
                                           at::Tensor states) {
  // The vector kernel reads u, delta, z and dout with any strides (token-major views of a layer's
  // activations: no transposing copies) and writes du, ddelta, dz in u's layout; the one-channel kernel
  // (other d_state or group sizes) works on channel-major copies.
  const int64_t dim = u.size(1), L = u.size(2), G = B.size(1), N = A.size(1);
  const bool vec = N == 16 && (dim / G) % mambabench::kVec == 0;
  if (!vec) {
    u = u.contiguous(), delta = delta.contiguous(), z = z.contiguous(), dout = dout.contiguous();
  }
  const Inputs in = make_inputs(u, delta, A, B, C, D, z, delta_bias, delta_softplus);
  const bool token_major = vec && u.stride(1) == 1 && L > 1;
  auto like_u = [&] {
    return token_major ? at::empty({in.batch, L, dim}, u.options()).transpose(1, 2)
                       : at::empty({in.batch, dim, L}, u.options());
  };
  auto du = like_u();
  auto ddelta = like_u();
  TORCH_CHECK(!dz_out.numel() || (vec && in.z && dz_out.scalar_type() == at::kFloat &&
                                  dz_out.sizes() == u.sizes()),
              "selective_scan_bwd: dz_out needs z, d_state 16 and u's shape in float32");
  auto dz = !in.z ? at::empty({0}, u.options()) : dz_out.numel() ? dz_out : like_u();
  TORCH_CHECK(!states.numel() || (vec && G == 1 && states.is_contiguous() && states.scalar_type() == at::kFloat &&
                                  states.numel() == in.batch * dim * long_blocks(L) * 16),
              "selective_scan_bwd: states must be selective_scan_fwd's (save_states) for these inputs");
  const float* kept = states.numel() ? states.data_ptr<float>() : nullptr;
  const Strided so{nullptr, du.stride(0), du.stride(1), du.stride(2)};
  const Strided sgo = strided(dout);
  const Strided sdz = in.z ? strided(dz) : so;
  const int64_t nthreads = at::get_num_threads();
  // Channels of one group share B and C, and a channel's dA, dD, dbias sum over the batch: every thread
  // accumulates into its own copies, summed at the end.
  auto dB_parts = at::zeros({nthreads, in.batch, in.G, in.L, in.N}, u.options());
  auto dC_parts = at::zeros({nthreads, in.batch, in.G, in.L, in.N}, u.options());
  auto dA_parts = at::zeros({nthreads, in.dim, in.N}, u.options());
  auto dD_parts = at::zeros({nthreads, in.dim}, u.options());
  auto dbias_parts = at::zeros({nthreads, in.dim}, u.options());
  const float* go = dout.data_ptr<float>();  // channel-major contiguous on the one-channel path
  float* dz_ptr = in.z ? dz.data_ptr<float>() : nullptr;
  float *du_p = du.data_ptr<float>(), *ddelta_p = ddelta.data_ptr<float>();
  const int64_t per_group = in.dim / in.G;
  float *dB_all = dB_parts.data_ptr<float>(), *dC_all = dC_parts.data_ptr<float>();
  float *dA_all = dA_parts.data_ptr<float>(), *dD_all = dD_parts.data_ptr<float>();
  float* dbias_all = dbias_parts.data_ptr<float>();
  if (vec) {
    using mambabench::kVec;
    using mambabench::vfloat;
    const int64_t per_batch = in.dim / kVec;
    at::parallel_for(0, in.batch * per_batch, 1, [&](int64_t lo, int64_t hi) {
      const int64_t tid = at::get_thread_num();
      float *dAp = dA_all + tid * in.dim * in.N, *dDp = dD_all + tid * in.dim, *dbp = dbias_all + tid * in.dim;
      auto part = [&](float* all, int64_t b, int64_t g) {  // this thread's (L, N) sums of (b, g): raw offsets
        return all + ((tid * in.batch + b) * in.G + g) * in.L * in.N;
      };
      if (kept || (in.L >= kLongFrom && in.G == 1)) {  // time blocks outermost, per run of one sequence
        for (int64_t item = lo; item < hi;) {
          const int64_t b = item / per_batch, end = std::min(hi, (b + 1) * per_batch);
          backward_long(in, sgo, so, sdz, b, item % per_batch, item % per_batch + (end - item), kept, du_p,
                        ddelta_p, dz_ptr, part(dB_all, b, 0), part(dC_all, b, 0), dAp, dDp, dbp);
          item = end;
        }
        return;
      }
      thread_local Tiles tiles;
      thread_local std::vector<vfloat> starts, hs, es, dBl, dCl;
      dBl.assign(in.L * in.N, vfloat{});
      dCl.assign(in.L * in.N, vfloat{});
      // sums a (sequence, group) run's lane accumulators into this thread's dB, dC
      auto flush = [&](int64_t b, int64_t g) {
        add_lane_sums(dBl.data(), part(dB_all, b, g), in.L * in.N);
        add_lane_sums(dCl.data(), part(dC_all, b, g), in.L * in.N);
        std::fill(dBl.begin(), dBl.end(), vfloat{});
        std::fill(dCl.begin(), dCl.end(), vfloat{});
      };
      const int64_t chunk = std::max<int64_t>(1, std::min(kChunkItems, kChunkFloats / (in.L * kVec)));
      int64_t run_b = -1, run_g = -1;
      for (int64_t first = lo; first < hi;) {
        const int64_t b = first / per_batch;
        const int64_t last = std::min({hi, first + chunk, (b + 1) * per_batch});  // one sequence per chunk
        const int64_t c0 = (first % per_batch) * kVec, nch = (last - first) * kVec;
        load_tiles(in, sgo, b, c0, nch, 0, in.L, tiles);
        for (int64_t item = first; item < last; ++item) {
          const int64_t d0 = (item % per_batch) * kVec, g = d0 / per_group;
          if (b != run_b || g != run_g) {
            if (run_b >= 0) flush(run_b, run_g);
            run_b = b, run_g = g;
          }
          backward_vec(in, b, d0, tiles, (item - first) * in.L * kVec, starts, hs, es, dBl.data(), dCl.data(),
                       dAp, dDp, dbp);
        }
        store_tiles(in, so, sdz, b, c0, nch, 0, in.L, tiles, du_p, ddelta_p, dz_ptr);
        first = last;
      }
      if (run_b >= 0) flush(run_b, run_g);
    });
  } else {
    // Parallel over channels (batch inside): the one-channel kernel, any d_state
    at::parallel_for(0, in.dim, 1, [&](int64_t lo, int64_t hi) {
      const int64_t tid = at::get_thread_num();
      float *dBp = dB_parts[tid].data_ptr<float>(), *dCp = dC_parts[tid].data_ptr<float>();
      float *dAp = dA_parts[tid].data_ptr<float>(), *dDp = dD_parts[tid].data_ptr<float>();
      float* dbp = dbias_parts[tid].data_ptr<float>();
      std::vector<float> starts, states;
      for (int64_t d = lo; d < hi; ++d)
        for (int64_t b = 0; b < in.batch; ++b) {
          if (in.N == 16)
            backward_channel<16>(in, go, b, d, du_p, ddelta_p, dAp, dBp, dCp, dDp, dz_ptr, dbp, starts, states);
          else
            backward_channel<0>(in, go, b, d, du_p, ddelta_p, dAp, dBp, dCp, dDp, dz_ptr, dbp, starts, states);
        }
    });
  }
  // the threads' partial sums (one thread: its part as it is)
  auto total = [&](const at::Tensor& parts) { return nthreads == 1 ? parts[0] : parts.sum(0); };
  return {du, ddelta, total(dA_parts), total(dB_parts), total(dC_parts), total(dD_parts), dz, total(dbias_parts)};
}
