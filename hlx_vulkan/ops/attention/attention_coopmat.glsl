// What the cooperative-matrix attention kernels share (attention_coopmat.comp, attention_coopmat_bwd.comp):
// fragment types, 16-bit bits of P, the 16-byte unit loads and the mask's batch offset. Included
// after the push block (mask_base reads p.off_m, p.mshape, p.mst) and the bindings.
#define FA coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA>
#define FB coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB>
#define ACC coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>

#if A_KIND == 1
#define A_BITS(x) uint(x)
#define P_BITS(x) uint(f32_to_bf16(x))
#define P_VAL(b) uintBitsToFloat((b) << 16)
#else
#define A_BITS(x) uint(float16BitsToUint16(x))
#define P_BITS(x) uint(float16BitsToUint16(float16_t(x)))
#define P_VAL(b) f16_to_f32(b)  // not float(float16_t): that round trip folds away (dtypes.glsl)
#endif

#define NEG_INF uintBitsToFloat(0xFF800000u)
const float LOG2E = 1.4426950408889634;
const float LN2 = 0.6931471805599453;

// Unit c (elements 8c .. 8c+7) of row `row` of a contiguous (rows, D) matrix at element `base`.
#if QKV_VEC
#define UNIT(buf, base, row, D, c) buf[((base) + (row) * (D)) / 8u + (c)]
#else
#define UNIT(buf, base, row, D, c) unit8_##buf(base + (row) * (D) + (c) * 8u)
#define UNIT8(buf) \
    uvec4 unit8_##buf(uint i) { \
        uint h[8]; \
        [[unroll]] for (uint j = 0u; j < 8u; ++j) h[j] = A_BITS(buf[i + j]); \
        return uvec4(h[0] | h[1] << 16, h[2] | h[3] << 16, h[4] | h[5] << 16, h[6] | h[7] << 16); \
    }
#endif

int mask_base(uint n) {
    int b = int(p.off_m);
    uint rest = n;
    for (int d = 3; d >= 0; --d) {
        uint c = rest % p.mshape[d];
        rest /= p.mshape[d];
        b += int(c) * p.mst[d];
    }
    return b;
}

