#version 450
// Cross-entropy of integer targets over rows of C logits, fused (log_softmax and nll in one
// kernel), one workgroup per row, the row read once.
// Forward: lse = log(sum(exp(x))) by a running (max, sum) per lane (as softmax_rows.comp),
// the lanes and threads merged in a fixed order; loss = lse - x[target], or 0 where the target
// is ignore_index; S (2, rows) gets lse per row, then 1 per row counted (0 for an ignored row).
// BACKWARD: dx = g[row] * (exp(x - lse) - (j == target)), 0 for an ignored row.
#extension GL_GOOGLE_include_directive : require
#include "float_controls.glsl"
#include "dtypes.glsl"
#include "vec4.glsl"
#include "math.glsl"

layout(constant_id = 0) const uint WG = 256;
layout(local_size_x_id = 0) in;

#if VEC
#define AT A_STORAGE4
#define OT O_STORAGE4
#else
#define AT A_STORAGE
#define OT O_STORAGE
#endif

// Bindings and push fields are declared in ops/cross_entropy.py (checked against this shader).
#if BACKWARD
layout(std430, binding = 0) writeonly buffer O { OT o[]; };
layout(std430, binding = 1) readonly buffer A { AT a[]; };
layout(std430, binding = 2) readonly buffer T { I_STORAGE tgt[]; };
layout(std430, binding = 3) readonly buffer S { float st[]; };
layout(std430, binding = 4) readonly buffer G { float gr[]; };
#else
layout(std430, binding = 0) writeonly buffer O { float loss[]; };
layout(std430, binding = 1) readonly buffer A { AT a[]; };
layout(std430, binding = 2) readonly buffer T { I_STORAGE tgt[]; };
layout(std430, binding = 3) writeonly buffer S { float st[]; };
layout(std430, binding = 4) buffer ERR { int err[]; };
#include "checks.glsl"
#endif
layout(push_constant) uniform Params {
    uint rows, C;
    int ignore;
    uint off_o, off_a, off_t, off_s, off_g;
#if !BACKWARD
    uint site;
#endif
} p;

#define CT float
#define OCT float
#define ROW_LEN p.C
#include "rows.glsl"
ROW_LOAD_FN(a, A_LOAD)

// (m1, s1) and (m2, s2) merged (as softmax_rows.comp).
vec2 merge(vec2 u, vec2 v) {
    float m = hlx_max(u.x, v.x);
    return vec2(m, (u.x == m ? u.y : u.y * exp(u.x - m)) + (v.x == m ? v.y : v.y * exp(v.x - m)));
}

shared vec2 red[WG];
vec2 merge_tree(vec2 v) {
    uint tid = gl_LocalInvocationID.x;
    red[tid] = v;
    barrier();
    [[unroll]] for (uint h = WG / 2u; h > 0u; h >>= 1u) {
        if (tid < h) red[tid] = merge(red[tid], red[tid + h]);
        barrier();
    }
    vec2 r = red[0];
    barrier();
    return r;
}

float logit(uint e) {
#if VEC
    return A4_LOAD(a[e >> 2])[e & 3u];
#else
    return float(A_LOAD(a[e]));
#endif
}

void main() {
    uint g = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    if (g >= p.rows) return;  // uniform across the workgroup
    uint tid = gl_LocalInvocationID.x;
    uint ae = p.off_a + g * p.C;
    int t = int(tgt[p.off_t + g]);
    bool ignored = t == p.ignore;
#if BACKWARD
    float lse = st[p.off_s + g];
    float gs = ignored ? 0.0 : gr[p.off_g + g];
    uint oe = p.off_o + g * p.C;
    FOR_SLOTS {
        vec4 v = ROW_LOAD(a, A4_LOAD, ae, s);
        uint e = 4u * s;
        vec4 hit = vec4(equal(uvec4(e, e + 1u, e + 2u, e + 3u), uvec4(uint(t))));
        ROW_STORE(o, oe, s, gs * (exp(v - lse) - hit));
    }
#else
    bool bad = !ignored && (t < 0 || t >= int(p.C));
    if (bad && tid == 0u) report_bad_index(p.site, t);
    vec4 m = vec4(-1.0 / 0.0), sm = vec4(0.0);
    FOR_SLOTS {
        vec4 v = ROW_LOAD(a, A4_LOAD, ae, s);
        bvec4 in_row = row_inside(s);
        [[unroll]] for (uint j = 0u; j < 4u; ++j) if (in_row[j]) {
            vec2 r = merge(vec2(m[j], sm[j]), vec2(v[j], 1.0));
            m[j] = r.x;
            sm[j] = r.y;
        }
    }
    vec2 r = merge(merge(vec2(m.x, sm.x), vec2(m.y, sm.y)), merge(vec2(m.z, sm.z), vec2(m.w, sm.w)));
    r = merge_tree(r);
    if (tid == 0u) {
        float lse = r.x + log(r.y);
        bool counts = !ignored && !bad;
        loss[p.off_o + g] = counts ? lse - logit(ae + uint(t)) : 0.0;
        st[p.off_s + g] = lse;
        st[p.off_s + p.rows + g] = ignored ? 0.0 : 1.0;
    }
#endif
}
