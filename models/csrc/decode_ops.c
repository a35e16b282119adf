/* The elementwise work of one decode step, for agentkit.models.fused_decode.
 *
 * At 32 rows of the embedded model every elementwise op (RMSNorm's six, rotary's seven per tensor, SiLU and
 * the gate product, the residual adds) costs 5-35 us, almost all of it dispatch: about 900 torch calls a step.
 * These three functions do the same arithmetic as transformers' Llama modules, one call each, with torch's
 * rounding: every op a torch bf16 tensor op would round is rounded here (to nearest even), and nothing else.
 * Built with -ffp-contract=off, so the compiler fuses no multiply-add that torch computes as two roundings.
 * Two things differ by design: RMSNorm's sum of squares is vectorized in another order than torch's, and SiLU's
 * exp is a polynomial (Cephes'), not torch's Sleef; either moves a result by at most a rounding step.
 * Rows are independent: an OpenMP loop over rows where there is enough work, serial below that. */
#include <math.h>
#include <stdint.h>

#include "bf16_math.h"

enum { F32 = 0, BF16 = 1 };

/* rows in parallel only where there is enough work to pay for waking the threads (`work`: elements, weighted
 * by their cost: the exp of SiLU costs about eight of the others' loads and stores) */
#define PARALLEL_ROWS _Pragma("omp parallel for schedule(static) if(work >= 262144)")

/* One set of kernels per dtype: T the element type, LOAD / STORE convert to and from fp32, HELD rounds an fp32
 * value as a tensor of T would hold it (the identity for fp32). */
#define KERNELS(SUFFIX, T, LOAD, STORE, HELD)                                                                 \
static void add_rms_norm_##SUFFIX(T* hidden, const T* delta, const T* weight, T* out, int64_t rows, int64_t dim,  \
                                  int64_t hs, int64_t ds, int64_t os, float eps) {                              \
  const int64_t work = rows * dim;                                                                            \
  PARALLEL_ROWS                                                                                               \
  for (int64_t r = 0; r < rows; r++) {                                                                        \
    T* h = hidden + r * hs; T* o = out + r * os;                                                              \
    if (delta) {                                                                                              \
      const T* d = delta + r * ds;                                                                            \
      _Pragma("omp simd")                                                                                     \
      for (int64_t i = 0; i < dim; i++) h[i] = STORE(LOAD(h[i]) + LOAD(d[i]));                                \
    }                                                                                                         \
    float squares = 0.f;                                                                                      \
    _Pragma("omp simd reduction(+:squares)")                                                                  \
    for (int64_t i = 0; i < dim; i++) { const float x = LOAD(h[i]); squares += x * x; }                       \
    const float inv = 1.f / sqrtf(squares / (float)dim + eps);                                                \
    _Pragma("omp simd")                                                                                       \
    for (int64_t i = 0; i < dim; i++) o[i] = STORE(LOAD(weight[i]) * HELD(LOAD(h[i]) * inv));                 \
  }                                                                                                           \
}                                                                                                             \
static void rotary_##SUFFIX(T* x, const T* cos, const T* sin, int64_t rows, int64_t heads, int64_t dim,         \
                            int64_t rs, int64_t hs, int64_t as) {                                             \
  const int64_t half = dim / 2;                                                                               \
  const int64_t work = rows * heads * dim;                                                                    \
  PARALLEL_ROWS                                                                                               \
  for (int64_t r = 0; r < rows; r++) {                                                                        \
    const T* c = cos + r * as; const T* s = sin + r * as;                                                     \
    for (int64_t h = 0; h < heads; h++) {                                                                     \
      T* v = x + r * rs + h * hs;                                                                             \
      _Pragma("omp simd")                                                                                     \
      for (int64_t i = 0; i < half; i++) {                                                                    \
        const float x1 = LOAD(v[i]), x2 = LOAD(v[half + i]);                                                  \
        v[i] = STORE(HELD(x1 * LOAD(c[i])) + HELD(-x2 * LOAD(s[i])));                                         \
        v[half + i] = STORE(HELD(x2 * LOAD(c[half + i])) + HELD(x1 * LOAD(s[half + i])));                     \
      }                                                                                                       \
    }                                                                                                         \
  }                                                                                                           \
}                                                                                                             \
static void silu_mul_##SUFFIX(const T* gate, const T* up, T* out, int64_t rows, int64_t dim, int64_t gs,         \
                              int64_t us, int64_t os) {                                                       \
  const int64_t work = 8 * rows * dim;                                                                                \
  PARALLEL_ROWS                                                                                               \
  for (int64_t r = 0; r < rows; r++) {                                                                        \
    const T* g = gate + r * gs; const T* u = up + r * us; T* o = out + r * os;                                \
    _Pragma("omp simd")                                                                                       \
    for (int64_t i = 0; i < dim; i++) {                                                                       \
      const float x = LOAD(g[i]);                                                                             \
      o[i] = STORE(HELD(x / (1.f + exp_clamped(-x))) * LOAD(u[i]));                                               \
    }                                                                                                         \
  }                                                                                                           \
}

KERNELS(f32, float, f32_id, f32_id, f32_id)
KERNELS(bf16, uint16_t, bf16_to_f32, f32_to_bf16, f32_round_bf16)

/* hidden += delta (when delta is given), then out = weight * rms_norm(hidden): transformers' residual add and
 * LlamaRMSNorm (fp32 statistics, the normalized row rounded to the input dtype, then times the weight). */
int agentkit_add_rms_norm(int dtype, void* hidden, const void* delta, const void* weight, void* out, int64_t rows,
                          int64_t dim, int64_t hidden_stride, int64_t delta_stride, int64_t out_stride, float eps) {
  const int64_t hs = hidden_stride, ds = delta_stride, os = out_stride;
  if (dtype == F32) add_rms_norm_f32(hidden, delta, weight, out, rows, dim, hs, ds, os, eps);
  else if (dtype == BF16) add_rms_norm_bf16(hidden, delta, weight, out, rows, dim, hs, ds, os, eps);
  else return 1;
  return 0;
}

/* x = x * cos + rotate_half(x) * sin in place, for `heads` heads of `dim` per row (transformers'
 * apply_rotary_pos_emb, each product and the sum rounded as torch rounds them). cos and sin: one row each. */
int agentkit_rotary(int dtype, void* x, const void* cos, const void* sin, int64_t rows, int64_t heads, int64_t dim,
                    int64_t row_stride, int64_t head_stride, int64_t angle_stride) {
  if (dim % 2) return 1;
  if (dtype == F32) rotary_f32(x, cos, sin, rows, heads, dim, row_stride, head_stride, angle_stride);
  else if (dtype == BF16) rotary_bf16(x, cos, sin, rows, heads, dim, row_stride, head_stride, angle_stride);
  else return 1;
  return 0;
}

/* out = silu(gate) * up: LlamaMLP's activation (silu rounded to the dtype, then the product). */
int agentkit_silu_mul(int dtype, const void* gate, const void* up, void* out, int64_t rows, int64_t dim,
                      int64_t gate_stride, int64_t up_stride, int64_t out_stride) {
  if (dtype == F32) silu_mul_f32(gate, up, out, rows, dim, gate_stride, up_stride, out_stride);
  else if (dtype == BF16) silu_mul_bf16(gate, up, out, rows, dim, gate_stride, up_stride, out_stride);
  else return 1;
  return 0;
}
