#version 450
// C = A @ B in float16 with float32 accumulation on cooperative-matrix hardware
// (GL_KHR_cooperative_matrix). A workgroup of 4 subgroups computes a 64x64 tile, each
// subgroup a 32x32 block of 2x2 16x16 fragments, reading A and B straight from
// row-major memory. The launcher uses it only when M, N, K are multiples of 16 and
// rows are contiguous; K is summed in order, so runs repeat bit for bit.
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#include "float_controls.glsl"
#include "dtypes.glsl"

layout(local_size_x = 32, local_size_y = 4) in;

// Bindings mirror BINDING_* in ops/matmul.py.
layout(std430, binding = 0) writeonly buffer O { float16_t c[]; };
layout(std430, binding = 1) readonly buffer A { float16_t a[]; };
layout(std430, binding = 2) readonly buffer B { float16_t b[]; };

// Mirrors PUSH_FORMAT in ops/matmul.py (the strides of the last two dims are 1 and K / N here).
layout(push_constant) uniform Params {
    uint M, N, K;
    uint off_a, off_b, off_o;
    int sa_b, sa_m, sa_k;
    int sb_b, sb_k, sb_n;
} p;

#define F16A coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA>
#define F16B coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB>
#define ACC coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>
#define OUT coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>

void main() {
    uint sg = gl_LocalInvocationID.y;  // one subgroup per y
    uint row0 = gl_WorkGroupID.y * 64u + (sg / 2u) * 32u;
    uint col0 = gl_WorkGroupID.x * 64u + (sg % 2u) * 32u;
    uint batch = gl_WorkGroupID.z;
    if (row0 >= p.M || col0 >= p.N) return;  // uniform across the subgroup
    uint abase = p.off_a + batch * uint(p.sa_b);
    uint bbase = p.off_b + batch * uint(p.sb_b);
    bool r1 = row0 + 16u < p.M, c1 = col0 + 16u < p.N;
    ACC acc[2][2];
    for (int i = 0; i < 2; ++i) for (int j = 0; j < 2; ++j) acc[i][j] = ACC(0.0);
    for (uint k = 0u; k < p.K; k += 16u) {
        F16A fa[2];
        F16B fb[2];
        coopMatLoad(fa[0], a, abase + row0 * uint(p.sa_m) + k, uint(p.sa_m), gl_CooperativeMatrixLayoutRowMajor);
        if (r1) coopMatLoad(fa[1], a, abase + (row0 + 16u) * uint(p.sa_m) + k, uint(p.sa_m),
                            gl_CooperativeMatrixLayoutRowMajor);
        coopMatLoad(fb[0], b, bbase + k * uint(p.sb_k) + col0, uint(p.sb_k), gl_CooperativeMatrixLayoutRowMajor);
        if (c1) coopMatLoad(fb[1], b, bbase + k * uint(p.sb_k) + col0 + 16u, uint(p.sb_k),
                            gl_CooperativeMatrixLayoutRowMajor);
        acc[0][0] = coopMatMulAdd(fa[0], fb[0], acc[0][0]);
        if (c1) acc[0][1] = coopMatMulAdd(fa[0], fb[1], acc[0][1]);
        if (r1) acc[1][0] = coopMatMulAdd(fa[1], fb[0], acc[1][0]);
        if (r1 && c1) acc[1][1] = coopMatMulAdd(fa[1], fb[1], acc[1][1]);
    }
    uint cbase = p.off_o + batch * p.M * p.N;
    for (uint i = 0u; i < 2u; ++i) {
        for (uint j = 0u; j < 2u; ++j) {
            if ((i == 1u && !r1) || (j == 1u && !c1)) continue;
            OUT o = OUT(acc[i][j]);
            coopMatStore(o, c, cbase + (row0 + 16u * i) * p.N + col0 + 16u * j, p.N, gl_CooperativeMatrixLayoutRowMajor);
        }
    }
}
