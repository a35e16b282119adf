/* bf16 conversions and a vectorizable exp, shared by the native kernels (decode_attention.c, decode_ops.c).
 * native_build.py hashes this header with each source, so a change here rebuilds both. */
#ifndef AGENTKIT_BF16_MATH_H
#define AGENTKIT_BF16_MATH_H
#include <stdint.h>

static inline float bf16_to_f32(uint16_t x) { union { uint32_t u; float f; } c; c.u = (uint32_t)x << 16; return c.f; }
static inline uint16_t f32_to_bf16(float f) {  /* round to nearest even, NaN kept quiet, as torch does */
  union { uint32_t u; float f; } c; c.f = f;
  const uint32_t rounded = (c.u + 0x7FFFu + ((c.u >> 16) & 1u)) >> 16, quiet = (c.u >> 16) | 0x40u;
  return (uint16_t)((c.u & 0x7FFFFFFFu) > 0x7F800000u ? quiet : rounded);  /* a select: the loops vectorize */
}
static inline float f32_id(float x) { return x; }
static inline float f32_round_bf16(float x) { return bf16_to_f32(f32_to_bf16(x)); }

/* exp over the float range (clamped to [-87, 88]), vectorizable: Cephes' expf polynomial, 2^n from the exponent
 * bits. The round to nearest is the 1.5 * 2^23 addition: __builtin_roundf compiles to a library call per element. */
static inline float exp_clamped(float x) {
  x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
  const float n = (x * 1.44269504f + 12582912.f) - 12582912.f;
  const float f = x - n * 0.693359375f - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * f + 1.3981999507e-3f; p = p * f + 8.3334519073e-3f; p = p * f + 4.1665795894e-2f;
  p = p * f + 1.6666665459e-1f; p = p * f + 5.0000001201e-1f; p = p * f * f + f + 1.0f;
  union { uint32_t u; float f; } c; c.u = (uint32_t)((int32_t)n + 127) << 23;
  return p * c.f;
}
#endif
