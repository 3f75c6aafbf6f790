// The kernels' vector math (simd_math.h) as an operator, so its accuracy is tested on the vector path each
// build compiles to (AVX-512, AVX2 or generic), not on a scalar copy of it.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>

#include <string>

#include "simd_math.h"

// `function` of every element of a contiguous float32 tensor, kVec lanes at a time (the tail padded with
// zeros): "exp2" (vexp2), "sigmoid" (vsigmoid), "softplus" (vsoftplus) or "softplus_slope" (the sigmoid that
// vsoftplus_sigmoid returns beside the softplus, what the Mamba-1 backward uses).
at::Tensor vector_math(at::Tensor x, std::string function) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.is_contiguous(), "vector_math: a contiguous float32 tensor expected");
  using mambabench::kVec;
  using mambabench::vfloat;
  vfloat (*fn)(vfloat) = nullptr;
  if (function == "exp2") {
    fn = mambabench::vexp2;
  } else if (function == "sigmoid") {
    fn = mambabench::vsigmoid;
  } else if (function == "softplus") {
    fn = mambabench::vsoftplus;
  } else if (function == "softplus_slope") {
    fn = [](vfloat v) {
      vfloat softplus, slope;
      mambabench::vsoftplus_sigmoid(v, softplus, slope);
      return slope;
    };
  }
  TORCH_CHECK(fn, "vector_math: unknown function '", function, "' (exp2, sigmoid, softplus, softplus_slope)");
  auto out = at::empty_like(x);
  const float* in = x.data_ptr<float>();
  float* o = out.data_ptr<float>();
  const int64_t n = x.numel();
  for (int64_t i = 0; i < n; i += kVec) {
    float lanes[kVec] = {};
    const int64_t w = std::min<int64_t>(kVec, n - i);
    std::copy_n(in + i, w, lanes);
    mambabench::vstore(lanes, fn(mambabench::vload(lanes)));
    std::copy_n(lanes, w, o + i);
  }
  return out;
}
