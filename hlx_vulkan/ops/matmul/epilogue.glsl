// A fused linear layer's epilogue (ops/linear.py): EPILOGUE(v, n) is what the kernel stores for
// its float32 sum v in column n, the bits of the composed layer's ops.
// BIAS 1: the bias, in binding Z_BINDING (3 unless the kernel says) in the output's dtype; push
// fields off_z and sz place it.
// WITH_BIAS(v, n) is what the composed layer stores before its last rounding: the product rounded
// to the output dtype, plus the bias of column n. n must be a column the caller stores (inside
// the bias). Include this after the push block and dtypes.glsl.
#if BIAS
#ifndef Z_BINDING
#define Z_BINDING 3
#endif
layout(std430, binding = Z_BINDING) readonly buffer Z { O_STORAGE z[]; };
#define Z_AT(n) z[int(p.off_z) + int(n) * p.sz]
#if O_KIND == 0 && O_BYTES == 2
// float16: added in float16 arithmetic, correctly rounded as the composed add's float32 sum
// rounded once is (24 >= 2 x 11 + 2 bits). Not float(float16_t(v)) + float(bias): NVIDIA's
// compiler (driver 580) folds float(float16_t(v)) back to v, even through a bit cast, which skips
// the product's rounding (measured on the H100, ninth stop).
#define WITH_BIAS(v, n) float(O_STORE(v) + Z_AT(n))
#elif O_KIND == 1
#define WITH_BIAS(v, n) (bf16_to_f32(O_STORE(v)) + bf16_to_f32(Z_AT(n)))
#else
#define WITH_BIAS(v, n) (float(O_STORE(v)) + float(Z_AT(n)))
#endif
#else
#define WITH_BIAS(v, n) (v)
#endif

// ACT 1: relu (ew.relu's x < 0 ? 0 : x, so NaN and -0.0 stay) of the value the composed layer's
// add or product stored: rounded to the output dtype first. A float16 value comes back through
// its bits in integer code, since NVIDIA's compiler folds float(float16_t(x)) to x (dtypes.glsl).
#if ACT == 1
#if O_KIND == 1
#define O_ROUNDED(v) bf16_to_f32(O_STORE(v))
#elif O_BYTES == 2
#define O_ROUNDED(v) f16_to_f32(uint(float16BitsToUint16(O_STORE(v))))
#else
#define O_ROUNDED(v) float(v)
#endif
float relu_of(float x) { return x < 0.0 ? 0.0 : x; }
#define EPILOGUE(v, n) relu_of(O_ROUNDED(WITH_BIAS(v, n)))
#else
#define EPILOGUE(v, n) WITH_BIAS(v, n)
#endif
