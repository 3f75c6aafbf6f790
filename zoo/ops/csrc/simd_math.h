// Small math helpers shared by the CPU kernels (header-only; every kernel is compiled with -ffast-math).
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

#include <cstring>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace mambabench {

// exp written so that gcc inlines and vectorises it (a call to libmvec's vector exp inside a recurrence
// forces every live vector register to be spilled around the call). Cephes' expf polynomial: about 1 ulp
// of error for the arguments a scan sees (x <= 0 for a stable A).
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

// Gated RMSNorm of one row (mamba_ssm's norm_before_gate=False): g = x * silu(z), then each group of
// `group` channels divided by its root mean square (+eps) and multiplied by w. out may not alias x or z.
inline void gated_rmsnorm_row(const float* x, const float* z, const float* w, float* out, int64_t D,
                              int64_t group, float eps) {
  for (int64_t g0 = 0; g0 < D; g0 += group) {
    float ss = 0.f;
#pragma omp simd reduction(+ : ss)
    for (int64_t i = g0; i < g0 + group; ++i) {
      const float v = x[i] * z[i] * sigmoid(z[i]);
      out[i] = v;
      ss += v * v;
    }
    const float scale = 1.f / std::sqrt(ss / static_cast<float>(group) + eps);
#pragma omp simd
    for (int64_t i = g0; i < g0 + group; ++i) out[i] = out[i] * scale * w[i];
  }
}

// Backward of gated_rmsnorm_row for one row, per group of `group` channels. With s = sigmoid(z),
// g = x z s, r = 1 / sqrt(mean(g^2) + eps) and n = g r:
//   dw += dout n                                  (weight: out = n w)
//   dg  = r (dout w) - g r^3 mean(dout w g)       (rmsnorm: through n = g r and r's dependence on g)
//   dx  = dg z s                                  (g = x silu(z))
//   dz  = dg x s (1 + z (1 - s))                  (silu'(z) = s (1 + z (1 - s)))
// Two passes over the group: the first keeps g in dx and s in dz (the second overwrites them), so sigmoid is
// evaluated once per channel. dx and dz may not alias the inputs; dw is accumulated into (+=).
inline void gated_rmsnorm_row_bwd(const float* dout, const float* x, const float* z, const float* w, float* dx,
                                  float* dz, float* dw, int64_t D, int64_t group, float eps) {
  const float inv_group = 1.f / static_cast<float>(group);
  for (int64_t g0 = 0; g0 < D; g0 += group) {
    float ss = 0.f, sdg = 0.f;
#pragma omp simd reduction(+ : ss, sdg)
    for (int64_t i = g0; i < g0 + group; ++i) {
      const float s = sigmoid(z[i]), g = x[i] * z[i] * s;
      dx[i] = g;
      dz[i] = s;
      ss += g * g;
      sdg += dout[i] * w[i] * g;
    }
    const float r = 1.f / std::sqrt(ss * inv_group + eps);
    const float c = r * r * r * sdg * inv_group;  // r^3 mean(dout w g)
#pragma omp simd
    for (int64_t i = g0; i < g0 + group; ++i) {
      const float g = dx[i], s = dz[i];
      const float dg = r * dout[i] * w[i] - c * g;
      dw[i] += dout[i] * g * r;
      dx[i] = dg * z[i] * s;
      dz[i] = dg * x[i] * s * (1.f + z[i] * (1.f - s));
    }
  }
}

// 2^x as 2^k * 2^(j/m) * 2^f: x rounded to the nearest multiple of 1/m (m = 32 with AVX-512, 8 with AVX2) by
// adding and subtracting 1.5 * 2^(23 - log2 m), whose sum keeps k * m + j in its low mantissa bits; 2^(j/m)
// from a table indexed by those bits (one vpermt2ps / vpermps); 2^f, |f| <= 1/(2m), by a minimax polynomial of
// degree 2 (m = 32) or 3 (m = 8), relative error 5e-8 / 3e-8 (fitted by linear programming on a dense grid).
// Against Cephes' degree-6 polynomial on |f| <= 1/2 this takes 3 or 4 operations on the FMA pipes instead of
// 6, where the Mamba-1 recurrence issues ~10 per state vector; the whole exp2 is within 1.7e-7 of exact
// (measured over [-126, 1]), the accuracy of CUDA's ex2.approx that mamba_ssm's kernels use.
alignas(64) inline constexpr float kExp2Frac32[32] = {
    0x1.000000p+0f, 0x1.059b0ep+0f, 0x1.0b5586p+0f, 0x1.11301ep+0f, 0x1.172b84p+0f, 0x1.1d4874p+0f,
    0x1.2387a6p+0f, 0x1.29e9e0p+0f, 0x1.306fe0p+0f, 0x1.371a74p+0f, 0x1.3dea64p+0f, 0x1.44e086p+0f,
    0x1.4bfdaep+0f, 0x1.5342b6p+0f, 0x1.5ab07ep+0f, 0x1.6247ecp+0f, 0x1.6a09e6p+0f, 0x1.71f75ep+0f,
    0x1.7a1148p+0f, 0x1.82589ap+0f, 0x1.8ace54p+0f, 0x1.93737cp+0f, 0x1.9c4918p+0f, 0x1.a5503cp+0f,
    0x1.ae89fap+0f, 0x1.b7f770p+0f, 0x1.c199bep+0f, 0x1.cb720ep+0f, 0x1.d5818ep+0f, 0x1.dfc974p+0f,
    0x1.ea4afap+0f, 0x1.f50766p+0f};  // 2^(j/32), rounded to float
alignas(32) inline constexpr float kExp2Frac8[8] = {0x1.000000p+0f, 0x1.172b84p+0f, 0x1.306fe0p+0f, 0x1.4bfdaep+0f,
                                                   0x1.6a09e6p+0f, 0x1.8ace54p+0f, 0x1.ae89fap+0f, 0x1.d5818ep+0f};

#if defined(__AVX512F__)
// 2^x for 16 lanes (see above); vscalefps multiplies by 2^floor(k), which also flushes very negative x to 0
// without a clamp.
inline __m512 exp2_ps(__m512 x) {
  const __m512 magic = _mm512_set1_ps(393216.f);  // 1.5 * 2^18: the sum's last 5 mantissa bits hold j
  __m512 shifted = _mm512_add_ps(x, magic);
  __asm__("" : "+v"(shifted));  // opaque to -ffast-math, which would fold (x + magic) - magic back into x
  __m512 k = _mm512_sub_ps(shifted, magic);
  __asm__("" : "+v"(k));  // and x - k into (x + magic) - shifted = 0
  const __m512 f = _mm512_sub_ps(x, k);
  const __m512 frac = _mm512_permutex2var_ps(_mm512_load_ps(kExp2Frac32), _mm512_castps_si512(shifted),
                                             _mm512_load_ps(kExp2Frac32 + 16));  // 2^(j/32): index bits 0-4
  const __m512 q = _mm512_fmadd_ps(_mm512_set1_ps(0.24022649228572845f), f, _mm512_set1_ps(0.6931573152542114f));
  const __m512 p = _mm512_fmadd_ps(_mm512_mul_ps(frac, f), q, frac);  // 2^(j/32) (1 + f q) = 2^(j/32 + f)
  return _mm512_scalef_ps(p, k);
}
#endif

// ---- One vector of kVec floats, the width the build's instruction set handles natively ----
// 16 lanes (one zmm) with AVX-512, 8 lanes (one ymm) with AVX2 or elsewhere (gcc's generic vectors).
// Kernels written on `vfloat` compile to either ISA from one source; the extension cache keys builds by CPU
// (zoo/ops/_extension.py), so each machine gets the path its CPU runs. (16-lane generic vectors on AVX2,
// two ymm per operation, measured 5-8x slower: every state vector spilled.)
#if defined(__AVX512F__)
constexpr int kVec = 16;
#else
constexpr int kVec = 8;
#endif
typedef float vfloat __attribute__((vector_size(kVec * sizeof(float))));
typedef int32_t vint __attribute__((vector_size(kVec * sizeof(float))));

inline vfloat vload(const float* p) {
  vfloat v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void vstore(float* p, vfloat v) { std::memcpy(p, &v, sizeof v); }
inline vfloat vsplat(float x) { return vfloat{} + x; }

// 2^x lane-wise, within 1.7e-7 relative (see kExp2Frac32 above). Very negative x: 0 with AVX-512, 2^-125
// with AVX2 (its clamp).
inline vfloat vexp2(vfloat x) {
#if defined(__AVX512F__)
  return reinterpret_cast<vfloat>(exp2_ps(reinterpret_cast<__m512>(x)));
#elif defined(__AVX2__) && defined(__FMA__)
  // no vscalefps on AVX2: x is clamped to the normal range and 2^floor(k) added to the result's exponent bits
  // (integer operations, off the FMA ports); the table of 8 is one vpermps
  __m256 v = _mm256_min_ps(_mm256_max_ps(reinterpret_cast<__m256>(x), _mm256_set1_ps(-125.f)), _mm256_set1_ps(127.f));
  const __m256 magic = _mm256_set1_ps(1572864.f);  // 1.5 * 2^20: the sum's last 3 mantissa bits hold j
  __m256 shifted = _mm256_add_ps(v, magic);
  __asm__("" : "+x"(shifted));  // opaque to -ffast-math, which would fold (v + magic) - magic back into v
  __m256 k = _mm256_sub_ps(shifted, magic);
  __asm__("" : "+x"(k));  // and v - k into (v + magic) - shifted = 0
  const __m256 f = _mm256_sub_ps(v, k);
  const __m256i bits = _mm256_castps_si256(shifted);
  const __m256 frac = _mm256_permutevar8x32_ps(_mm256_load_ps(kExp2Frac8), bits);  // 2^(j/8): index bits 0-2
  __m256 q = _mm256_fmadd_ps(_mm256_set1_ps(0.0554962232708931f), f, _mm256_set1_ps(0.2402576357126236f));
  q = _mm256_fmadd_ps(q, f, _mm256_set1_ps(0.6931472420692444f));
  const __m256 p = _mm256_fmadd_ps(_mm256_mul_ps(frac, f), q, frac);  // 2^(j/8) (1 + f q)
  // floor(k) << 23: the sum's bits from bit 3 up are 8 * 2^20 + floor(k) (mod 2^29); the magic's shift out
  const __m256i scale = _mm256_slli_epi32(_mm256_srli_epi32(bits, 3), 23);
  return reinterpret_cast<vfloat>(_mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), scale)));
#else
  vfloat r;
  for (int i = 0; i < kVec; ++i) r[i] = fast_exp(x[i] * 0.693147180559945309f);
  return r;
#endif
}

// 1/x lane-wise. AVX-512: vrcp14ps's 14-bit estimate and one Newton step r (2 - x r), 3 operations where gcc
// expands a division under -ffast-math into 5 (the same estimate and step, unfused); within 1.2e-7 relative.
// Elsewhere a division.
inline vfloat vrecip(vfloat x) {
#if defined(__AVX512F__)
  const __m512 d = reinterpret_cast<__m512>(x), r = _mm512_rcp14_ps(d);
  return reinterpret_cast<vfloat>(_mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.f))));
#else
  return 1.f / x;
#endif
}

inline vfloat vsigmoid(vfloat x) { return vrecip(1.f + vexp2(x * -1.44269504088896341f)); }

// softplus(x) = log(1 + e^x) lane-wise, as max(x, 0) + log1p(e^-|x|); log1p(y) for y in (0, 1] as
// 2 atanh(s) = 2 s P(s^2) with s = y / (2 + y) <= 1/3, P a degree-4 minimax fit of atanh(s)/s on s^2 in [0, 1/9]
// (4e-9; 7e-8 evaluated in float32; the series to s^14/15 took three more FMAs). Inline, so a pass over dt stays
// in registers: libmvec's log1pf and expf took ~20% of the Mamba-1 forward scan at the ablation shapes. Above 20
// the result rounds to x itself, mamba_ssm's threshold.
inline vfloat vsoftplus_given(vfloat x, vfloat y) {  // y = e^-|x|
  const vfloat s = y * vrecip(2.f + y), s2 = s * s;
  vfloat p = s2 * 0.14095647633075714f + 0.13978740572929382f;
  p = p * s2 + 0.20012575387954712f;
  p = p * s2 + 0.33333155512809753f;
  p = p * s2 + 1.f;
  return (x > 0.f ? x : vfloat{}) + 2.f * s * p;
}
inline vfloat vsoftplus(vfloat x) {
  const vfloat ax = x < 0.f ? -x : x;
  return vsoftplus_given(x, vexp2(ax * -1.44269504088896341f));
}

// softplus(x) and its derivative sigmoid(x) from one exp: with y = e^-|x|, sigmoid(x) = 1 / (1 + y) for x > 0
// and y / (1 + y) below (what the Mamba-1 backward needs of dt for every channel and step).
inline void vsoftplus_sigmoid(vfloat x, vfloat& softplus_out, vfloat& sigmoid_out) {
  const vfloat ax = x < 0.f ? -x : x;
  const vfloat y = vexp2(ax * -1.44269504088896341f);
  softplus_out = vsoftplus_given(x, y);
  sigmoid_out = (x > 0.f ? vsplat(1.f) : y) * vrecip(1.f + y);
}

inline float vsum(vfloat v) {
  float s = 0.f;
  for (int i = 0; i < kVec; ++i) s += v[i];
  return s;
}

}  // namespace mambabench
