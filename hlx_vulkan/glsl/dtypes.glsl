// Storage and conversion for each operand slot (A, B, C inputs; O output).
// The launcher defines, per slot S: S_STORAGE (the buffer element type), S_STORAGE4 (a vector
// of four), S_BYTES (the element's size) and S_KIND: 0 = converts with a constructor,
// 1 = bfloat16 held as uint16_t bits, 2 = bool held as a uint8_t 0 or 1 (any nonzero value
// stores as 1).
// CT is the compute type of the inputs, OCT of the output.
#ifndef HLX_DTYPES_GLSL
#define HLX_DTYPES_GLSL
#extension GL_EXT_shader_explicit_arithmetic_types : require
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_shader_8bit_storage : require

float bf16_to_f32(uint16_t bits) { return uintBitsToFloat(uint(bits) << 16); }

// Round to nearest even; NaN stays a quiet NaN with its sign.
uint16_t f32_to_bf16(float v) {
    uint u = floatBitsToUint(v);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return uint16_t((u >> 16) | 0x40u);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return uint16_t(u >> 16);
}

// float16 bits to float32 in integer code. Where a kernel rounds a float32 to float16 and goes on
// in float32, float(float16_t(x)) is not enough: NVIDIA's compiler folds that round trip back to x,
// even through a bit cast (benchmarks/NOTES.md, the ninth stop).
float f16_to_f32(uint bits) {
    uint e = (bits >> 10) & 0x1Fu, m = bits & 0x3FFu;
    float mag = e == 0u ? float(m) * 5.9604644775390625e-8  // subnormal: m * 2^-24, exact
              : uintBitsToFloat(e == 31u ? 0x7F800000u | m << 13 : (e + 112u) << 23 | m << 13);
    return (bits & 0x8000u) != 0u ? -mag : mag;
}

#if A_KIND == 1
#define A_LOAD(v) CT(bf16_to_f32(v))
#else
#define A_LOAD(v) CT(v)
#endif
#if B_KIND == 1
#define B_LOAD(v) CT(bf16_to_f32(v))
#else
#define B_LOAD(v) CT(v)
#endif
#if C_KIND == 1
#define C_LOAD(v) CT(bf16_to_f32(v))
#else
#define C_LOAD(v) CT(v)
#endif
#if O_KIND == 1
#define O_STORE(v) f32_to_bf16(float(v))
#elif O_KIND == 2
#define O_STORE(v) uint8_t((v) != OCT(0) ? 1 : 0)
#else
#define O_STORE(v) O_STORAGE(v)
#endif
#endif
