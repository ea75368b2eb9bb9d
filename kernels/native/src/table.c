// One ISA's kernel table, compiled with that ISA's flags beside its kernels.
#include "kernels.h"

#define STR2(x) #x
#define STR(x) STR2(x)

const struct kernel_table K(table) = {
  .isa = STR(ISA),
  .gemm_scratch_bytes = K(gemm_scratch_bytes),
  .gemm = K(gemm),
  .relu = K(relu),
  .relu_backward = K(relu_backward),
  .gelu = K(gelu),
  .gelu_backward = K(gelu_backward),
  .silu = K(silu),
  .silu_backward = K(silu_backward),
  .swiglu = K(swiglu),
  .swiglu_backward = K(swiglu_backward),
  .add = K(add),
  .add_bias = K(add_bias),
  .bias_grad = K(bias_grad),
  .multiply = K(multiply),
  .rope = K(rope),
  .softmax_rows = K(softmax_rows),
  .gather_rows = K(gather_rows),
  .scatter_add_rows = K(scatter_add_rows),
  .scatter_rows = K(scatter_rows),
  .softmax_backward_rows = K(softmax_backward_rows),
  .causal_mask_rows = K(causal_mask_rows),
  .layer_norm = K(layer_norm),
  .layer_norm_backward = K(layer_norm_backward),
  .rms_norm = K(rms_norm),
  .rms_norm_backward = K(rms_norm_backward),
  .sum_squares = K(sum_squares),
  .first_non_finite = K(first_non_finite),
  .adamw = K(adamw),
};
