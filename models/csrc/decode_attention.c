/* Single-token (decode) attention over a grouped key/value cache, for agentkit.models.native_attention.
 *
 * One task per (batch row, key/value head): the query heads sharing that key/value head read each cached
 * position once, masked positions (left padding) are skipped, and everything accumulates in fp32. Tensors
 * are read in place through their strides (the last dimension must be contiguous), so the cache view with
 * spare room between rows needs no copy. Tasks run on OpenMP, which in a torch process is torch's own runtime.
 * Built by native_attention.py with the machine's C compiler (-O3 -march=native): on CPUs with AVX-512 BF16,
 * bf16 heads of 64 use its dot-product instruction; everything else takes the portable loops. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "bf16_math.h"
#if defined(__AVX512F__) && defined(__AVX512BF16__)
#include <immintrin.h>
#define HAVE_AVX512_BF16 1
#else
#define HAVE_AVX512_BF16 0
#endif

#define MAX_GROUP 32
#define MAX_DIM 256

typedef struct {
  int64_t q_sb, q_sh, k_sb, k_sh, k_st, v_sb, v_sh, v_st, m_sb, m_st, o_sb, o_sh;
  int64_t batch, heads, kv_heads, positions, dim;
  float scale;
} Shape;

/* Softmax in place over s[g * P + t] for the unmasked positions; returns 1 / the sum (0 if all masked). */
static inline float softmax_row(float* s, int64_t P, float max_score) {
  if (max_score == -INFINITY) return 0.f;
  float sum = 0.f;
#pragma omp simd reduction(+:sum)
  for (int64_t t = 0; t < P; t++) { float e = exp_clamped(s[t] - max_score); s[t] = e; sum += e; }
  return 1.f / sum;
}

#define PORTABLE_KERNEL(NAME, T, LOAD, STORE)                                                            \
static int NAME(const T* q, const T* k, const T* v, const uint8_t* mask, T* out, const Shape* sh) {     \
  const int64_t G = sh->heads / sh->kv_heads, P = sh->positions, D = sh->dim;                            \
  int failed = 0;                                                                                        \
  _Pragma("omp parallel for schedule(static) reduction(|:failed)")                                       \
  for (int64_t task = 0; task < sh->batch * sh->kv_heads; task++) {                                      \
    const int64_t b = task / sh->kv_heads, kh = task % sh->kv_heads;                                     \
    float qf[MAX_GROUP][MAX_DIM], acc[MAX_GROUP][MAX_DIM], mx[MAX_GROUP], inv[MAX_GROUP], row[MAX_DIM];   \
    float* s = (float*)malloc(sizeof(float) * (size_t)(G * P));                                          \
    if (!s) { failed = 1; continue; }                                                                    \
    for (int64_t g = 0; g < G; g++) {                                                                    \
      const T* qp = q + b * sh->q_sb + (kh * G + g) * sh->q_sh;                                          \
      for (int64_t d = 0; d < D; d++) { qf[g][d] = LOAD(qp[d]) * sh->scale; acc[g][d] = 0.f; }           \
      mx[g] = -INFINITY;                                                                                 \
    }                                                                                                    \
    const T* kb = k + b * sh->k_sb + kh * sh->k_sh;                                                      \
    const T* vb = v + b * sh->v_sb + kh * sh->v_sh;                                                      \
    const uint8_t* mb = mask ? mask + b * sh->m_sb : NULL;                                               \
    for (int64_t t = 0; t < P; t++) {                                                                    \
      if (mb && !mb[t * sh->m_st]) { for (int64_t g = 0; g < G; g++) s[g * P + t] = -INFINITY; continue; } \
      const T* kp = kb + t * sh->k_st;                                                                   \
      for (int64_t d = 0; d < D; d++) row[d] = LOAD(kp[d]);                                              \
      for (int64_t g = 0; g < G; g++) {                                                                  \
        float a = 0.f;                                                                                   \
        _Pragma("omp simd reduction(+:a)")                                                               \
        for (int64_t d = 0; d < D; d++) a += qf[g][d] * row[d];                                          \
        s[g * P + t] = a; if (a > mx[g]) mx[g] = a;                                                      \
      }                                                                                                  \
    }                                                                                                    \
    for (int64_t g = 0; g < G; g++) inv[g] = softmax_row(s + g * P, P, mx[g]);                           \
    for (int64_t t = 0; t < P; t++) {                                                                    \
      if (mb && !mb[t * sh->m_st]) continue;                                                             \
      const T* vp = vb + t * sh->v_st;                                                                   \
      for (int64_t d = 0; d < D; d++) row[d] = LOAD(vp[d]);                                              \
      for (int64_t g = 0; g < G; g++) {                                                                  \
        const float p = s[g * P + t];                                                                    \
        _Pragma("omp simd")                                                                              \
        for (int64_t d = 0; d < D; d++) acc[g][d] += p * row[d];                                         \
      }                                                                                                  \
    }                                                                                                    \
    for (int64_t g = 0; g < G; g++) {                                                                    \
      T* op = out + b * sh->o_sb + (kh * G + g) * sh->o_sh;                                              \
      for (int64_t d = 0; d < D; d++) op[d] = STORE(acc[g][d] * inv[g]);                                 \
    }                                                                                                    \
    free(s);                                                                                             \
  }                                                                                                      \
  return failed;                                                                                         \
}

PORTABLE_KERNEL(attend_bf16, uint16_t, bf16_to_f32, f32_to_bf16)
PORTABLE_KERNEL(attend_f32, float, f32_id, f32_id)

#if HAVE_AVX512_BF16
/* bf16, head dim 64: a query head's dot product with a cached key is two vdpbf16ps. */
static int attend_bf16_d64(const uint16_t* q, const uint16_t* k, const uint16_t* v, const uint8_t* mask,
                            uint16_t* out, const Shape* sh) {
  const int64_t G = sh->heads / sh->kv_heads, P = sh->positions;
  int failed = 0;
#pragma omp parallel for schedule(static) reduction(|:failed)
  for (int64_t task = 0; task < sh->batch * sh->kv_heads; task++) {
    const int64_t b = task / sh->kv_heads, kh = task % sh->kv_heads;
    __m512bh qv[MAX_GROUP][2];
    __m512 acc[MAX_GROUP][4];
    float mx[MAX_GROUP], inv[MAX_GROUP];
    float* s = (float*)malloc(sizeof(float) * (size_t)(G * P));
    if (!s) { failed = 1; continue; }
    for (int64_t g = 0; g < G; g++) {
      const uint16_t* qp = q + b * sh->q_sb + (kh * G + g) * sh->q_sh;
      qv[g][0] = (__m512bh)_mm512_loadu_si512(qp);
      qv[g][1] = (__m512bh)_mm512_loadu_si512(qp + 32);
      for (int j = 0; j < 4; j++) acc[g][j] = _mm512_setzero_ps();
      mx[g] = -INFINITY;
    }
    const uint16_t* kb = k + b * sh->k_sb + kh * sh->k_sh;
    const uint16_t* vb = v + b * sh->v_sb + kh * sh->v_sh;
    const uint8_t* mb = mask ? mask + b * sh->m_sb : NULL;
    for (int64_t t = 0; t < P; t++) {
      if (mb && !mb[t * sh->m_st]) { for (int64_t g = 0; g < G; g++) s[g * P + t] = -INFINITY; continue; }
      const uint16_t* kp = kb + t * sh->k_st;
      const __m512bh k0 = (__m512bh)_mm512_loadu_si512(kp), k1 = (__m512bh)_mm512_loadu_si512(kp + 32);
      for (int64_t g = 0; g < G; g++) {
        __m512 a = _mm512_dpbf16_ps(_mm512_setzero_ps(), qv[g][0], k0);
        a = _mm512_dpbf16_ps(a, qv[g][1], k1);
        const float x = _mm512_reduce_add_ps(a) * sh->scale;
        s[g * P + t] = x;
        if (x > mx[g]) mx[g] = x;
      }
    }
    for (int64_t g = 0; g < G; g++) inv[g] = softmax_row(s + g * P, P, mx[g]);
    for (int64_t t = 0; t < P; t++) {
      if (mb && !mb[t * sh->m_st]) continue;
      const uint16_t* vp = vb + t * sh->v_st;
      __m512 row[4];
      for (int j = 0; j < 4; j++)
        row[j] = _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)(vp + 16 * j))), 16));
      for (int64_t g = 0; g < G; g++) {
        const __m512 p = _mm512_set1_ps(s[g * P + t]);
        for (int j = 0; j < 4; j++) acc[g][j] = _mm512_fmadd_ps(p, row[j], acc[g][j]);
      }
    }
    for (int64_t g = 0; g < G; g++) {
      uint16_t* op = out + b * sh->o_sb + (kh * G + g) * sh->o_sh;
      float tmp[64];
      for (int j = 0; j < 4; j++) _mm512_storeu_ps(tmp + 16 * j, _mm512_mul_ps(acc[g][j], _mm512_set1_ps(inv[g])));
      for (int d = 0; d < 64; d++) op[d] = f32_to_bf16(tmp[d]);
    }
    free(s);
  }
  return failed;
}
#endif

int agentkit_has_avx512_bf16(void) { return HAVE_AVX512_BF16; }

/* dtype: 0 fp32, 1 bf16. Returns 0 on success, 1 for shapes this build cannot take or scratch it could not
 * allocate (the output is then incomplete and the caller must not use it). */
int agentkit_decode_attention(int dtype, const void* q, const void* k, const void* v, const uint8_t* mask,
                              void* out, const int64_t* strides, const int64_t* sizes, float scale) {
  Shape sh = {strides[0], strides[1], strides[2], strides[3], strides[4], strides[5], strides[6], strides[7],
              strides[8], strides[9], strides[10], strides[11],
              sizes[0], sizes[1], sizes[2], sizes[3], sizes[4], scale};
  if (sh.kv_heads <= 0 || sh.heads % sh.kv_heads || sh.heads / sh.kv_heads > MAX_GROUP || sh.dim > MAX_DIM
      || sh.dim <= 0 || sh.positions <= 0)
    return 1;
  if (dtype == 0) return attend_f32(q, k, v, mask, out, &sh);
  if (dtype != 1) return 1;
#if HAVE_AVX512_BF16
  if (sh.dim == 64) return attend_bf16_d64(q, k, v, mask, out, &sh);
#endif
  return attend_bf16(q, k, v, mask, out, &sh);
}
