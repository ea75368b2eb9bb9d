// The one kernel interface. Everything above kernels/ computes through it and never knows which
// backend runs. Arrays are Float32Array / Int32Array views the backend allocated (`allocF32`,
// `allocI32`): for the WebAssembly backend they are views into its shared memory, which is what
// lets worker threads read and write the same tensors without copies.

/** nn: C = A[m×k]·B[k×n]; nt: C = A[m×k]·B[n×k]ᵀ; tn: C = A[k×m]ᵀ·B[k×n]. */
export type GemmForm = 'nn' | 'nt' | 'tn';
export const GEMM_FORMS: readonly GemmForm[] = ['nn', 'nt', 'tn'];

/** Row strides, in floats, of A, B and C as stored (default: their row lengths). */
export interface GemmStrides { lda?: number; ldb?: number; ldc?: number }

/** The row strides of a GEMM's operands, checking that each array holds its last row. */
export function gemmLayout(form: GemmForm, m: number, n: number, k: number, a: ArrayLike<number>, b: ArrayLike<number>,
  c: ArrayLike<number>, strides: GemmStrides = {}): { lda: number; ldb: number; ldc: number } {
  const [aRows, aCols] = form === 'tn' ? [k, m] : [m, k];
  const [bRows, bCols] = form === 'nt' ? [n, k] : [k, n];
  const lda = strides.lda ?? aCols, ldb = strides.ldb ?? bCols, ldc = strides.ldc ?? n;
  const need = (what: string, array: ArrayLike<number>, rows: number, cols: number, ld: number) => {
    if (ld < cols) throw new RangeError(`gemm ${what}: row stride ${ld} is shorter than a row of ${cols}`);
    if (rows > 0 && cols > 0) requireLength(`gemm ${what}`, array, (rows - 1) * ld + cols);
  };
  need('A', a, aRows, aCols, lda);
  need('B', b, bRows, bCols, ldb);
  need('C', c, m, n, ldc);
  return { lda, ldb, ldc };
}

export interface Kernels {
  /** 'reference', 'wasm-simd' or 'wasm-relaxed-simd'. */
  readonly name: string;

  allocF32(length: number): Float32Array;
  allocI32(length: number): Int32Array;
  /** Returns an array from `allocF32` / `allocI32` to the backend. */
  free(array: Float32Array | Int32Array): void;

  /**
   * C[m×n] = op(A)·op(B), or C += op(A)·op(B) when `accumulate`. Row-major; rows are contiguous
   * unless `strides` gives a matrix's row stride in floats (a block of columns of a wider matrix).
   */
  gemm(form: GemmForm, m: number, n: number, k: number,
    a: Float32Array, b: Float32Array, c: Float32Array, accumulate: boolean, strides?: GemmStrides): void;

  // Elementwise over out.length (= x.length). Backward kernels: dx = dy · f'(x); dx may alias dy.
  relu(x: Float32Array, out: Float32Array): void;
  reluBackward(x: Float32Array, dy: Float32Array, dx: Float32Array): void;
  /** Exact (erf) gelu. */
  gelu(x: Float32Array, out: Float32Array): void;
  geluBackward(x: Float32Array, dy: Float32Array, dx: Float32Array): void;
  silu(x: Float32Array, out: Float32Array): void;
  siluBackward(x: Float32Array, dy: Float32Array, dx: Float32Array): void;
  /** h = silu(g) ⊙ u. */
  swiglu(g: Float32Array, u: Float32Array, out: Float32Array): void;
  /** Given dh: dg = dh ⊙ u ⊙ silu'(g), du = dh ⊙ silu(g). dg and du may alias dh. */
  swigluBackward(g: Float32Array, u: Float32Array, dh: Float32Array, dg: Float32Array, du: Float32Array): void;

  /** Elementwise over out.length: out = x + y. out may alias x or y. */
  add(x: Float32Array, y: Float32Array, out: Float32Array): void;
  /** Elementwise over out.length: out = x ⊙ y. out may alias x or y. */
  multiply(x: Float32Array, y: Float32Array, out: Float32Array): void;
  /** A bias on every row, in place: x[r·ld + j] += bias[j] for r < rows, j < cols (rows may be columns of wider ones). */
  addBias(x: Float32Array, bias: Float32Array, rows: number, cols: number, ld: number): void;
  /** The bias's gradient, accumulated: dBias[j] += Σ_r dy[r·ld + j], adding rows in order. */
  biasGrad(dy: Float32Array, rows: number, cols: number, ld: number, dBias: Float32Array): void;

  /**
   * Rotary positions (Hugging Face's half-split form), in place: each of `rows` rows, `stride`
   * floats apart, at position row % time, holds `groups` blocks of headDim values; a block
   * [x₁ | x₂] becomes [x₁·cos − x₂·sin | x₂·cos + x₁·sin] from the [time × headDim/2] tables.
   * `inverse` rotates back (the transpose, for the backward).
   */
  rope(x: Float32Array, rows: number, stride: number, groups: number, headDim: number, time: number,
    cos: Float32Array, sin: Float32Array, inverse: boolean): void;

  /** Row-wise over [rows × cols]: out = softmax(x), out may alias x; and given lse [rows], lse[r] = log Σ_c exp(x[r, c]). */
  softmaxRows(x: Float32Array, out: Float32Array, rows: number, cols: number, lse?: Float32Array): void;
  /** out[i, :] = scale[i] · src[index[i], :] for i < count (scale omitted: 1). */
  gatherRows(src: Float32Array, index: Int32Array, count: number, cols: number, out: Float32Array,
    scale?: Float32Array): void;
  /** out[index[i], :] += scale[i] · src[i, :] for i < count (scale omitted: 1). */
  scatterAddRows(src: Float32Array, index: Int32Array, count: number, cols: number, out: Float32Array,
    scale?: Float32Array): void;
  /** out[index[i], :] = scale[i] · src[i, :] for i < count (scale omitted: 1); other rows are left as they are. */
  scatterRows(src: Float32Array, index: Int32Array, count: number, cols: number, out: Float32Array, scale?: Float32Array): void;

  /** out = scale · p ⊙ (dp − Σ_c dp·p) per row (softmax's backward). out may alias dp. */
  softmaxBackwardRows(p: Float32Array, dp: Float32Array, out: Float32Array, rows: number, cols: number, scale: number): void;
  /** Rows in blocks of `cols`: row i of a block keeps columns ≤ i, times `scale`; the rest become −∞. */
  causalMaskRows(s: Float32Array, rows: number, cols: number, scale: number): void;

  // Row normalisations over [rows × cols]; cols a multiple of 4. Forward keeps rstd (and mean) per
  // row; backward writes dx and adds into the gain's (and bias's) gradient.
  layerNorm(x: Float32Array, gain: Float32Array, bias: Float32Array | undefined, out: Float32Array,
    rstd: Float32Array, mean: Float32Array, rows: number, cols: number, eps: number): void;
  layerNormBackward(x: Float32Array, gain: Float32Array, rstd: Float32Array, mean: Float32Array, dy: Float32Array,
    dx: Float32Array, dGain: Float32Array, dBias: Float32Array | undefined, rows: number, cols: number): void;
  rmsNorm(x: Float32Array, gain: Float32Array, out: Float32Array, rstd: Float32Array, rows: number, cols: number, eps: number): void;
  rmsNormBackward(x: Float32Array, gain: Float32Array, rstd: Float32Array, dy: Float32Array, dx: Float32Array,
    dGain: Float32Array, rows: number, cols: number): void;

  /** Σ x². */
  sumSquares(x: Float32Array): number;
  /** The index of the first NaN or ±Inf in x, or −1. */
  firstNonFinite(x: Float32Array): number;
  /** One AdamW update of w from g, in place in w, m, v (see AdamHyper). */
  adamw(w: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, h: AdamHyper): void;
}

/**
 * g' = g·clip; m = β₁m + (1−β₁)g'; v = β₂v + (1−β₂)g'²; w = w·decay − lr·(m/correct1)/(√(v/correct2) + eps).
 */
export interface AdamHyper {
  lr: number; beta1: number; beta2: number; correct1: number; correct2: number; decay: number; clip: number; eps: number;
}

/** Throws unless the arrays of a rope call hold what it addresses; every backend checks the same way. */
export function checkRope(x: ArrayLike<number>, rows: number, stride: number, groups: number, headDim: number, time: number,
  cos: ArrayLike<number>, sin: ArrayLike<number>): void {
  if (headDim % 2 !== 0) throw new RangeError(`rope: headDim ${headDim} is odd; the halves must pair up`);
  if (groups * headDim > stride) throw new RangeError(`rope: ${groups} blocks of ${headDim} do not fit a row stride of ${stride}`);
  if (rows > 0) requireLength('rope x', x, (rows - 1) * stride + groups * headDim);
  requireLength('rope cos', cos, Math.min(rows, time) * headDim / 2);
  requireLength('rope sin', sin, Math.min(rows, time) * headDim / 2);
}

/** Throws unless the arrays of an addBias or biasGrad call hold what it addresses; every backend checks the same way. */
export function checkBias(what: string, rowsName: string, x: ArrayLike<number>, bias: ArrayLike<number>, rows: number, cols: number, ld: number): void {
  for (const [name, v] of [['rows', rows], ['cols', cols], ['ld', ld]] as const) {
    if (!Number.isInteger(v) || v < 0) throw new RangeError(`${what} ${name}: expected a whole number ≥ 0, got ${v}`);
  }
  if (ld < cols) throw new RangeError(`${what} ld: row stride ${ld} is shorter than a row of ${cols}`);
  if (rows > 0 && cols > 0) requireLength(`${what} ${rowsName}`, x, (rows - 1) * ld + cols);
  requireLength(`${what} ${rowsName === 'x' ? 'bias' : 'dBias'}`, bias, cols);
}

/** Throws unless `array` holds at least `length` elements; every backend checks the same way. */
export function requireLength(what: string, array: ArrayLike<number>, length: number): void {
  if (array.length < length) {
    throw new RangeError(`${what}: needs ${length} elements, got an array of ${array.length}`);
  }
}
