// CPU kernel for the Mamba-1 selective scan, with the semantics of mamba_ssm's selective_scan_fn.
//
// Layout (prepared by zoo/ops/selective_scan.py; everything float32 and contiguous):
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
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cmath>
#include <vector>

namespace {

constexpr int64_t kBlock = 64;   // time tile (forward) and recompute block (backward)
constexpr int64_t kMaxN = 256;   // mamba_ssm's kernels also cap d_state at 256

// exp written so that gcc inlines and vectorises it (a call to libmvec's vector exp inside the
// recurrence forces every live vector register to be spilled around the call). Cephes' expf
// polynomial: about 1 ulp of error for the arguments a scan sees (x <= 0 for a stable A).
inline float fast_exp(float x) {
  x = std::min(std::max(x, -87.3f), 88.3f);
  const float k = std::floor(x * 1.44269504088896341f + 0.5f);
  const float g = x - k * 0.693359375f + k * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * g + 1.3981999507e-3f;
  p = p * g + 8.3334519073e-3f;
  p = p * g + 4.1665795894e-2f;
  p = p * g + 1.6666665459e-1f;
  p = p * g + 5.0000001201e-1f;
  p = p * (g * g) + g + 1.0f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  return p * std::bit_cast<float>(bits);
}

inline float softplus(float x) { return x <= 20.f ? std::log1p(std::exp(x)) : x; }
inline float sigmoid(float x) { return 1.f / (1.f + std::exp(-x)); }

struct Inputs {
  const float *u, *delta, *A, *B, *C, *D, *z, *bias;
  int64_t batch, dim, L, N, G;
  bool softplus;
};

Inputs make_inputs(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A,
                   const torch::Tensor& B, const torch::Tensor& C, const torch::Tensor& D,
                   const torch::Tensor& z, const torch::Tensor& bias, bool delta_softplus) {
  Inputs in;
  in.u = u.data_ptr<float>();
  in.delta = delta.data_ptr<float>();
  in.A = A.data_ptr<float>();
  in.B = B.data_ptr<float>();
  in.C = C.data_ptr<float>();
  in.D = D.numel() ? D.data_ptr<float>() : nullptr;
  in.z = z.numel() ? z.data_ptr<float>() : nullptr;
  in.bias = bias.numel() ? bias.data_ptr<float>() : nullptr;
  in.batch = u.size(0);
  in.dim = u.size(1);
  in.L = u.size(2);
  in.N = A.size(1);
  in.G = B.size(1);
  in.softplus = delta_softplus;
  TORCH_CHECK(in.N <= kMaxN, "selective_scan: d_state must be <= ", kMaxN, ", got ", in.N);
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
// fallback when channels cannot be grouped 16 to a vector, see forward_lanes). NT > 0 fixes N at compile
// time (the common d_state 16); NT == 0 handles any N. `h` carries the state between calls.
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

// Forward of 16 channels of one (batch, group) at once, one channel per SIMD lane: the state is
// h[n][lane], B_t[n] and C_t[n] are broadcast to all lanes, and y accumulates lane-wise, so no step
// needs a horizontal reduction (the per-channel kernel above spends about a third of its instructions
// on one). dt and u are transposed into (time, lane) tiles first.
constexpr int kLanes = 16;

template <int NT>
void forward_lanes(const Inputs& in, int64_t b, int64_t d0, float* out) {
  const int64_t N = NT > 0 ? NT : in.N;
  constexpr int64_t NL = NT > 0 ? NT : kMaxN;
  const int64_t L = in.L;
  const int64_t g = d0 / (in.dim / in.G);
  const float* Bt = in.B + (b * in.G + g) * L * N;
  const float* Ct = in.C + (b * in.G + g) * L * N;
  alignas(64) float a[NL][kLanes];
  alignas(64) float h[NL][kLanes];
  alignas(64) float dt_row[kBlock];
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
    for (int c = 0; c < kLanes; ++c) {
      const int64_t off = (b * in.dim + d0 + c) * L;
      dt_tile(in, in.delta + off, d0 + c, t0, T, dt_row);
      const float* u = in.u + off + t0;
      for (int64_t i = 0; i < T; ++i) {
        dt[i][c] = dt_row[i];
        dtu[i][c] = dt_row[i] * u[i];
      }
    }
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
    for (int c = 0; c < kLanes; ++c) {
      const int64_t off = (b * in.dim + d0 + c) * L + t0;
      const float Dd = in.D ? in.D[d0 + c] : 0.f;
      const float* u = in.u + off;
      float* o = out + off;
      if (in.z) {
        const float* z = in.z + off;
#pragma omp simd
        for (int64_t i = 0; i < T; ++i) o[i] = (y[i][c] + Dd * u[i]) * z[i] * sigmoid(z[i]);
      } else {
#pragma omp simd
        for (int64_t i = 0; i < T; ++i) o[i] = y[i][c] + Dd * u[i];
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

}  // namespace

torch::Tensor selective_scan_fwd(torch::Tensor u, torch::Tensor delta, torch::Tensor A, torch::Tensor B,
                                 torch::Tensor C, torch::Tensor D, torch::Tensor z, torch::Tensor delta_bias,
                                 bool delta_softplus) {
  const Inputs in = make_inputs(u, delta, A, B, C, D, z, delta_bias, delta_softplus);
  auto out = torch::empty_like(u);
  float* o = out.data_ptr<float>();
  // Lane-parallel blocks of 16 channels need dim/G to be a multiple of 16 (true for every model here);
  // otherwise one channel at a time.
  const bool lanes = (in.dim / in.G) % kLanes == 0;
  const int64_t items = in.batch * in.dim / (lanes ? kLanes : 1);
  at::parallel_for(0, items, 1, [&](int64_t lo, int64_t hi) {
    if (lanes) {
      const int64_t per_batch = in.dim / kLanes;
      for (int64_t item = lo; item < hi; ++item) {
        const int64_t b = item / per_batch, d0 = (item % per_batch) * kLanes;
        if (in.N == 16)
          forward_lanes<16>(in, b, d0, o);
        else
          forward_lanes<0>(in, b, d0, o);
      }
    } else if (in.N == 16) {
      forward_range<16>(in, lo, hi, o);
    } else {
      forward_range<0>(in, lo, hi, o);
    }
  });
  return out;
}

// Returns du, ddelta, dA, dB, dC, dD, dz, ddelta_bias (dB, dC in the kernel's (batch, G, L, N) layout).
std::vector<torch::Tensor> selective_scan_bwd(torch::Tensor dout, torch::Tensor u, torch::Tensor delta,
                                              torch::Tensor A, torch::Tensor B, torch::Tensor C,
                                              torch::Tensor D, torch::Tensor z, torch::Tensor delta_bias,
                                              bool delta_softplus) {
  const Inputs in = make_inputs(u, delta, A, B, C, D, z, delta_bias, delta_softplus);
  auto du = torch::empty_like(u);
  auto ddelta = torch::empty_like(u);
  auto dA = torch::zeros_like(A);
  auto dD = torch::zeros({in.dim}, u.options());
  auto dbias = torch::zeros({in.dim}, u.options());
  auto dz = in.z ? torch::empty_like(u) : torch::empty({0}, u.options());
  const int64_t nthreads = at::get_num_threads();
  // Channels of one group share B and C: each thread accumulates into its own copy, summed at the end.
  auto dB_parts = torch::zeros({nthreads, in.batch, in.G, in.L, in.N}, u.options());
  auto dC_parts = torch::zeros({nthreads, in.batch, in.G, in.L, in.N}, u.options());
  const float* go = dout.data_ptr<float>();
  // Parallel over channels only (batch inside), so dA, dD and dbias of a channel have one writer.
  at::parallel_for(0, in.dim, 1, [&](int64_t lo, int64_t hi) {
    const int64_t tid = at::get_thread_num();
    float* dBp = dB_parts[tid].data_ptr<float>();
    float* dCp = dC_parts[tid].data_ptr<float>();
    std::vector<float> starts, states;
    for (int64_t d = lo; d < hi; ++d)
      for (int64_t b = 0; b < in.batch; ++b) {
        if (in.N == 16)
          backward_channel<16>(in, go, b, d, du.data_ptr<float>(), ddelta.data_ptr<float>(),
                               dA.data_ptr<float>(), dBp, dCp, dD.data_ptr<float>(),
                               in.z ? dz.data_ptr<float>() : nullptr, dbias.data_ptr<float>(), starts,
                               states);
        else
          backward_channel<0>(in, go, b, d, du.data_ptr<float>(), ddelta.data_ptr<float>(),
                              dA.data_ptr<float>(), dBp, dCp, dD.data_ptr<float>(),
                              in.z ? dz.data_ptr<float>() : nullptr, dbias.data_ptr<float>(), starts,
                              states);
      }
  });
  return {du, ddelta, dA, dB_parts.sum(0), dC_parts.sum(0), dD, dz, dbias};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("fwd", &selective_scan_fwd, "selective scan forward (CPU, fp32)");
  m.def("bwd", &selective_scan_bwd, "selective scan backward (CPU, fp32)");
}
