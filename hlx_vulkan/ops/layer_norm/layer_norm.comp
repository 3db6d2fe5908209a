#version 450
// Fused layer norm over rows of D contiguous elements.
// Forward: one workgroup per row: mean, then the mean square of (x - mean), then
// y = (x - mean) * rstd * w + b; mean and rstd are saved per row (S, float32 pairs).
// BACKWARD: one workgroup per chunk of CH rows, the rows in order: per row
// dx = rstd * (g*w - mean(g*w) - xhat * mean(g*w*xhat)), and per column the chunk's
// partial sums of g*xhat (dweight) and g (dbias), rows in order, into P (layer_norm_wb.comp
// adds the chunks up in order).
//
// Order: thread t owns the 4-element slots s = t, t + WG, ... of a row (elements 4s..4s+3);
// it sums lane by lane over its slots in order, then (l0 + l1) + (l2 + l3), then a fixed
// shared-memory tree over the WG threads. WG follows from D alone (ops/layer_norm.py), so a
// row's bits do not depend on the number of rows, on VEC (vector loads) or on NC (the row
// held in NC registers per thread; NC = 0 reads it again for each pass).
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "float_controls.glsl"
#include "dtypes.glsl"
#include "vec4.glsl"

layout(constant_id = 0) const uint WG = 256;
layout(local_size_x_id = 0) in;

#if VEC
#define XT A_STORAGE4
#define GT B_STORAGE4
#define WT C_STORAGE4
#define OT O_STORAGE4
#else
#define XT A_STORAGE
#define GT B_STORAGE
#define WT C_STORAGE
#define OT O_STORAGE
#endif

// Bindings and push fields are declared in ops/layer_norm.py (checked against this shader).
#if BACKWARD
layout(std430, binding = 0) writeonly buffer DX { OT dx[]; };
layout(std430, binding = 1) readonly buffer X { XT x[]; };
layout(std430, binding = 2) readonly buffer G { GT gr[]; };
layout(std430, binding = 3) readonly buffer W { WT w[]; };
layout(std430, binding = 4) readonly buffer S { float st[]; };
layout(std430, binding = 5) buffer P { vec4 part[]; };
layout(push_constant) uniform Params {
    uint rows, D, ch, wb;   // wb: 1 to write the dweight / dbias partials
    uint off_dx, off_x, off_g, off_w, off_s, off_p;
} p;
#else
layout(std430, binding = 0) writeonly buffer O { OT o[]; };
layout(std430, binding = 1) readonly buffer X { XT x[]; };
layout(std430, binding = 2) readonly buffer W { WT w[]; };
layout(std430, binding = 3) readonly buffer B { GT bias[]; };
layout(std430, binding = 4) writeonly buffer S { float st[]; };
layout(push_constant) uniform Params {
    uint rows, D;
    float eps;
    uint off_o, off_x, off_w, off_b, off_s;
} p;
#endif

#define CT float
#define OCT float
#define ROW_LEN p.D
#include "rows.glsl"
ROW_LOAD_FN(x, A_LOAD)
ROW_LOAD_FN(w, C_LOAD)
#if BACKWARD
ROW_LOAD_FN(gr, B_LOAD)
#else
ROW_LOAD_FN(bias, B_LOAD)
#endif

void main() {
    uint tid = gl_LocalInvocationID.x;
    uint g = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    uint ns = ROW_SLOTS;
    float invD = HLX_DIV(1.0, float(p.D));
#if !BACKWARD
    if (g >= p.rows) return;  // uniform across the workgroup
    uint xe = p.off_x + g * p.D;
#if NC
    vec4 xv[NC];
#define XV(k, s) xv[k]
#else
#define XV(k, s) ROW_LOAD(x, A4_LOAD, xe, s)
#endif
    vec4 acc = vec4(0.0);
    FOR_SLOTS {
#if NC
        xv[k] = ROW_LOAD(x, A4_LOAD, xe, s);
#endif
        acc += XV(k, s);
    }
    float mean = row_sum(vec2(row_lanes(acc), 0.0)).x * invD;
    acc = vec4(0.0);
    FOR_SLOTS {
        vec4 d = mix(vec4(0.0), XV(k, s) - mean, row_inside(s));
        acc += d * d;
    }
    float var = row_sum(vec2(row_lanes(acc), 0.0)).x * invD;
    float rstd = HLX_DIV(1.0, sqrt(var + p.eps));
    FOR_SLOTS {
        vec4 wv = ROW_LOAD(w, C4_LOAD, p.off_w, s);
        vec4 bv = ROW_LOAD(bias, B4_LOAD, p.off_b, s);
        ROW_STORE(o, p.off_o + g * p.D, s, (XV(k, s) - mean) * rstd * wv + bv);
    }
    if (tid == 0u) {
        st[p.off_s + 2u * g] = mean;
        st[p.off_s + 2u * g + 1u] = rstd;
    }
#else
    uint r0 = g * p.ch;
    if (r0 >= p.rows) return;
    uint r1 = min(p.rows, r0 + p.ch);
#if NC
    vec4 hv[NC], gw[NC], dwa[NC], dba[NC];
    [[unroll]] for (uint k = 0u; k < NC; ++k) { dwa[k] = vec4(0.0); dba[k] = vec4(0.0); }
#endif
    // Partials of chunk g: P holds dweight's then dbias's, each (chunks, D) with D padded to 4.
    uint nd4 = ns;
    uint chunks = (p.rows + p.ch - 1u) / p.ch;
    uint pw = (p.off_p >> 2) + g * nd4, pb = (p.off_p >> 2) + (chunks + g) * nd4;
    for (uint r = r0; r < r1; ++r) {
        float mean = st[p.off_s + 2u * r], rstd = st[p.off_s + 2u * r + 1u];
        uint xe = p.off_x + r * p.D, ge = p.off_g + r * p.D;
        vec4 a1 = vec4(0.0), a2 = vec4(0.0);
        FOR_SLOTS {
            vec4 xh = mix(vec4(0.0), (ROW_LOAD(x, A4_LOAD, xe, s) - mean) * rstd, row_inside(s));
            vec4 gv = ROW_LOAD(gr, B4_LOAD, ge, s);
            vec4 gwv = gv * ROW_LOAD(w, C4_LOAD, p.off_w, s);
            a1 += gwv;
            a2 += gwv * xh;
#if NC
            hv[k] = xh;
            gw[k] = gwv;
            dwa[k] += gv * xh;
            dba[k] += gv;
#else
            if (p.wb != 0u) {
                bool first = r == r0;
                part[pw + s] = (first ? vec4(0.0) : part[pw + s]) + gv * xh;
                part[pb + s] = (first ? vec4(0.0) : part[pb + s]) + gv;
            }
#endif
        }
        vec2 c = row_sum(vec2(row_lanes(a1), row_lanes(a2))) * invD;
        FOR_SLOTS {
#if NC
            vec4 xh = hv[k], gwv = gw[k];
#else
            vec4 xh = mix(vec4(0.0), (ROW_LOAD(x, A4_LOAD, xe, s) - mean) * rstd, row_inside(s));
            vec4 gwv = ROW_LOAD(gr, B4_LOAD, ge, s) * ROW_LOAD(w, C4_LOAD, p.off_w, s);
#endif
            ROW_STORE(dx, p.off_dx + r * p.D, s, rstd * (gwv - xh * c.y - c.x));
        }
    }
#if NC
    if (p.wb != 0u) {
        FOR_SLOTS {
            part[pw + s] = dwa[k];
            part[pb + s] = dba[k];
        }
    }
#endif
#endif
}
