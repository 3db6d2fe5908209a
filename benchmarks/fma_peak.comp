#version 450
// float32 FMA issue rate with no memory traffic in the loop (probe_ceilings.py); 64 independent
// multiply-adds a thread a round, in one of three forms, p.iters rounds; the sum is stored so
// none is optimised away.
//   FORM 0: scalars, fma(acc, x, y), the same two operands for all (the best case);
//   FORM 1: the register-tiled GEMM's form: 8 scalars of a times 2 vec4 of b into 8 x 2 vec4;
//   FORM 2: vec4, fma(acc, x, y), the same two vec4 operands for all.
#extension GL_EXT_control_flow_attributes : require
layout(local_size_x = 256) in;
layout(std430, binding = 0) writeonly buffer O { vec4 o[]; };
layout(std430, binding = 1) readonly buffer A { vec4 a[]; };
layout(push_constant) uniform Params { uint iters; } p;
void main() {
    uint t = gl_GlobalInvocationID.x;
    vec4 x = a[t & 1023u], y = a[(t + 7u) & 1023u];
    vec4 s = vec4(0.0);
#if FORM == 0
    float acc[64];
    [[unroll]] for (uint i = 0u; i < 64u; ++i) acc[i] = x[i & 3u] * float(i + 1u);
    for (uint k = 0u; k < p.iters; ++k)
        [[unroll]] for (uint i = 0u; i < 64u; ++i) acc[i] = fma(acc[i], x.x, y.y);
    [[unroll]] for (uint i = 0u; i < 64u; ++i) s[i & 3u] += acc[i];
#elif FORM == 1
    float av[8];
    vec4 bv[2], acc[8][2];
    [[unroll]] for (uint r = 0u; r < 8u; ++r) av[r] = x[r & 3u] + float(r);
    bv[0] = y;
    bv[1] = y + x;
    [[unroll]] for (uint r = 0u; r < 8u; ++r) { acc[r][0] = x * float(r); acc[r][1] = y * float(r); }
    for (uint k = 0u; k < p.iters; ++k)
        [[unroll]] for (uint r = 0u; r < 8u; ++r) [[unroll]] for (uint h = 0u; h < 2u; ++h)
            acc[r][h] = fma(vec4(av[r]), bv[h], acc[r][h]);
    [[unroll]] for (uint r = 0u; r < 8u; ++r) s += acc[r][0] + acc[r][1];
#else
    vec4 acc[16];
    [[unroll]] for (uint i = 0u; i < 16u; ++i) acc[i] = x * float(i + 1u);
    for (uint k = 0u; k < p.iters; ++k)
        [[unroll]] for (uint i = 0u; i < 16u; ++i) acc[i] = fma(acc[i], x, y);
    [[unroll]] for (uint i = 0u; i < 16u; ++i) s += acc[i];
#endif
    o[t] = s;
}
