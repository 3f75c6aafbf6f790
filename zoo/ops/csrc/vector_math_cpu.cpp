// The kernels' vector math (simd_math.h) as an operator, so its accuracy is tested on the vector path each
// build compiles to (AVX-512, AVX2 or generic), not on a scalar copy of it.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>

#include "simd_math.h"

// 2^x of every element of a contiguous float32 tensor by mambabench::vexp2, kVec lanes at a time (the tail
// padded with zeros).
at::Tensor vector_exp2(at::Tensor x) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.is_contiguous(), "vector_exp2: a contiguous float32 tensor expected");
  using mambabench::kVec;
  auto out = at::empty_like(x);
  const float* in = x.data_ptr<float>();
  float* o = out.data_ptr<float>();
  const int64_t n = x.numel();
  for (int64_t i = 0; i < n; i += kVec) {
    float lanes[kVec] = {};
    const int64_t w = std::min<int64_t>(kVec, n - i);
    std::copy_n(in + i, w, lanes);
    const mambabench::vfloat r = mambabench::vexp2(mambabench::vload(lanes));
    mambabench::vstore(lanes, r);
    std::copy_n(lanes, w, o + i);
  }
  return out;
}
