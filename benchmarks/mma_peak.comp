#version 450
// Cooperative-matrix issue rate with no memory traffic in the loop (probe_mma_peak.py): FM x FN
// accumulators a subgroup, fragments loaded once, then p.iters rounds of FM * FN independent
// 16x16x16 multiply-adds; the sum of the accumulators is stored so none is optimised away.
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_control_flow_attributes : require
layout(local_size_x = THREADS) in;
layout(std430, binding = 0) writeonly buffer O { float o[]; };
layout(std430, binding = 1) readonly buffer A { float16_t a[]; };
layout(push_constant) uniform Params { uint iters; } p;
#define FA coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA>
#define FB coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB>
#define ACC coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>
void main() {
    FA fa[FM];
    FB fb[FN];
    ACC acc[FM][FN];
    uint sg = gl_SubgroupID;
    [[unroll]] for (uint i = 0u; i < FM; ++i) coopMatLoad(fa[i], a, (sg * 8u + i) * 256u, 16u, gl_CooperativeMatrixLayoutRowMajor);
    [[unroll]] for (uint j = 0u; j < FN; ++j) coopMatLoad(fb[j], a, (sg * 8u + 4u + j) * 256u, 16u, gl_CooperativeMatrixLayoutRowMajor);
    [[unroll]] for (uint i = 0u; i < FM; ++i) [[unroll]] for (uint j = 0u; j < FN; ++j) acc[i][j] = ACC(0.0);
    for (uint t = 0u; t < p.iters; ++t)
        [[unroll]] for (uint i = 0u; i < FM; ++i) [[unroll]] for (uint j = 0u; j < FN; ++j)
            acc[i][j] = coopMatMulAdd(fa[i], fb[j], acc[i][j]);
    ACC s = acc[0][0];
    [[unroll]] for (uint i = 0u; i < FM; ++i) [[unroll]] for (uint j = 0u; j < FN; ++j) if (i + j > 0u) s = s + acc[i][j];
    uint g = gl_WorkGroupID.x * (THREADS / 32u) + sg;
    coopMatStore(s, o, g * 256u, 16u, gl_CooperativeMatrixLayoutRowMajor);
}
