// The WebAssembly kernel module: every export works on byte offsets into the imported, shared memory.
export { gemm, gemmScratchBytes } from './gemm';
export { relu, reluBackward, gelu, geluBackward, silu, siluBackward, swiglu, swigluBackward } from './activations';
export { softmaxRows, gatherRows, scatterAddRows, scatterRows, softmaxBackwardRows, causalMaskRows } from './rows';
export { layerNorm, layerNormBackward, rmsNorm, rmsNormBackward } from './norms';
export { sumSquares, adamw } from './optim';
export { firstNonFinite } from './checks';
export { add, multiply, addBias, biasGrad } from './elementwise';
export { rope } from './rope';
