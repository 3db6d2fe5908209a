// Four-element loads and stores for the dtype slots of dtypes.glsl (include it first):
// S4_LOAD(v) turns an S_STORAGE4 into a vec4, O4_STORE(v) a vec4 into an O_STORAGE4.
#ifndef HLX_VEC4_GLSL
#define HLX_VEC4_GLSL
#define HLX_BF4(v) vec4(bf16_to_f32((v).x), bf16_to_f32((v).y), bf16_to_f32((v).z), bf16_to_f32((v).w))
#if A_KIND == 1
#define A4_LOAD(v) HLX_BF4(v)
#else
#define A4_LOAD(v) vec4(v)
#endif
#if B_KIND == 1
#define B4_LOAD(v) HLX_BF4(v)
#else
#define B4_LOAD(v) vec4(v)
#endif
#if C_KIND == 1
#define C4_LOAD(v) HLX_BF4(v)
#else
#define C4_LOAD(v) vec4(v)
#endif
#if O_KIND == 1
#define O4_STORE(v) u16vec4(f32_to_bf16((v).x), f32_to_bf16((v).y), f32_to_bf16((v).z), f32_to_bf16((v).w))
#else
#define O4_STORE(v) O_STORAGE4(v)
#endif
#endif
