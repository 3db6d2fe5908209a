#version 450
// Softmax or log-softmax over rows of R contiguous elements, one workgroup per row, the
// row read once: each thread keeps a running (max, sum of exp(x - max)) per lane over its
// slots (glsl/rows.glsl), rescaling the sum when the max grows; the lanes and then the
// threads combine in a fixed order (a fixed shared-memory tree), then the outputs are written
// (from registers where the row fits, NC > 0, else read again).
// BACKWARD: A is the forward's output y, G the incoming gradient; the row sum is sum(g * y)
// (softmax) or sum(g) (log), then dx = y * (g - s) or g - exp(y) * s.
#extension GL_GOOGLE_include_directive : require
#include "float_controls.glsl"
#include "dtypes.glsl"
#include "vec4.glsl"
#include "math.glsl"

layout(constant_id = 0) const uint WG = 256;
layout(local_size_x_id = 0) in;

#if VEC
#define AT A_STORAGE4
#define GT B_STORAGE4
#define OT O_STORAGE4
#else
#define AT A_STORAGE
#define GT B_STORAGE
#define OT O_STORAGE
#endif

// Bindings and push fields are declared in ops/softmax.py (checked against this shader).
layout(std430, binding = 0) writeonly buffer O { OT o[]; };
layout(std430, binding = 1) readonly buffer A { AT a[]; };
#if BACKWARD
layout(std430, binding = 2) readonly buffer G { GT gr[]; };
#endif
layout(push_constant) uniform Params {
    uint rows, R;
    uint off_o, off_a, off_g;
} p;

#define CT float
#define OCT float
#define ROW_LEN p.R
#include "rows.glsl"
ROW_LOAD_FN(a, A_LOAD)
#if BACKWARD
ROW_LOAD_FN(gr, B_LOAD)
#endif

// (m1, s1) and (m2, s2) merged: the larger max, each sum rescaled to it (a sum already at the
// max is kept as is, so rows of -inf stay (-inf, 0)).
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

void main() {
    uint g = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    if (g >= p.rows) return;  // uniform across the workgroup
    uint ae = p.off_a + g * p.R, oe = p.off_o + g * p.R;
#if NC
    vec4 av[NC];
#define AV(k, s) av[k]
#else
#define AV(k, s) ROW_LOAD(a, A4_LOAD, ae, s)
#endif
#if BACKWARD
    uint ge = p.off_g + g * p.R;
#if NC
    vec4 gv[NC];
#define GV(k, s) gv[k]
#else
#define GV(k, s) ROW_LOAD(gr, B4_LOAD, ge, s)
#endif
    vec4 acc = vec4(0.0);
    FOR_SLOTS {
#if NC
        av[k] = ROW_LOAD(a, A4_LOAD, ae, s);
        gv[k] = ROW_LOAD(gr, B4_LOAD, ge, s);
#endif
#if LOG
        acc += GV(k, s);
#else
        acc += GV(k, s) * AV(k, s);
#endif
    }
    float sum = row_sum(vec2(row_lanes(acc), 0.0)).x;
    FOR_SLOTS {
#if LOG
        ROW_STORE(o, oe, s, GV(k, s) - exp(AV(k, s)) * sum);
#else
        ROW_STORE(o, oe, s, AV(k, s) * (GV(k, s) - sum));
#endif
    }
#else
    vec4 m = vec4(-1.0 / 0.0), sm = vec4(0.0);
    FOR_SLOTS {
#if NC
        av[k] = ROW_LOAD(a, A4_LOAD, ae, s);
#endif
        vec4 v = AV(k, s);
        bvec4 in_row = row_inside(s);
        [[unroll]] for (uint j = 0u; j < 4u; ++j) if (in_row[j]) {
            vec2 r = merge(vec2(m[j], sm[j]), vec2(v[j], 1.0));
            m[j] = r.x;
            sm[j] = r.y;
        }
    }
    vec2 t = merge(merge(vec2(m.x, sm.x), vec2(m.y, sm.y)), merge(vec2(m.z, sm.z), vec2(m.w, sm.w)));
    t = merge_tree(t);
#if LOG
    float shift = t.x + log(t.y);
#else
    float inv = HLX_DIV(1.0, t.y);
#endif
    FOR_SLOTS {
#if LOG
        ROW_STORE(o, oe, s, AV(k, s) - shift);
#else
        ROW_STORE(o, oe, s, exp(AV(k, s) - t.x) * inv);
#endif
    }
#endif
}
