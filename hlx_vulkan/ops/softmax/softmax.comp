#version 450
// Softmax or log-softmax along one axis, one workgroup per row: max, then sum of
// exp(x - max), each a fixed per-thread fold and a fixed tree; then the outputs.
// With BACKWARD, the gradient instead: A is the forward's output y, G the incoming
// gradient g (laid out as y), and the row sum is sum(g * y) (softmax) or sum(g) (log).
#extension GL_GOOGLE_include_directive : require
#include "float_controls.glsl"
#include "dtypes.glsl"
#include "math.glsl"

layout(constant_id = 0) const uint WG = 256;
layout(local_size_x_id = 0) in;

// Bindings and push fields are declared in ops/softmax.py (checked against this shader).
layout(std430, binding = 0) writeonly buffer O { O_STORAGE o[]; };
layout(std430, binding = 1) readonly buffer A { A_STORAGE a[]; };
#if BACKWARD
layout(std430, binding = 2) readonly buffer G { B_STORAGE gr[]; };
#endif

// Mirrors PUSH_FORMAT in ops/softmax.py.
layout(push_constant) uniform Params {
    uint rows;
    uint R;
    uint off_a;
    uint off_o;
    int st_r;       // input stride along the axis
    int st_ro;      // output stride along the axis
    uint shape[4];  // the other dimensions, coalesced
    int st[4];
    int st_o[4];
    uint off_g;
} p;

shared float red[WG];

float tree(float v, bool is_max) {
    uint tid = gl_LocalInvocationID.x;
    red[tid] = v;
    barrier();
    for (uint s = WG / 2; s > 0; s >>= 1) {
        if (tid < s) red[tid] = is_max ? hlx_max(red[tid], red[tid + s]) : red[tid] + red[tid + s];
        barrier();
    }
    float r = red[0];
    barrier();
    return r;
}

void main() {
    uint g = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    if (g >= p.rows) return;  // uniform across the workgroup
    uint tid = gl_LocalInvocationID.x;
    int base = int(p.off_a), obase = int(p.off_o);
    uint rest = g;
    for (int d = 3; d >= 0; --d) {
        uint c = rest % p.shape[d];
        rest /= p.shape[d];
        base += int(c) * p.st[d];
        obase += int(c) * p.st_o[d];
    }
#if BACKWARD
    int gbase = base - int(p.off_a) + int(p.off_g);
    float s = 0.0;
    for (uint r = tid; r < p.R; r += WG) {
        float gv = float(B_LOAD(gr[gbase + int(r) * p.st_r]));
#if LOG
        s += gv;
#else
        s += gv * float(A_LOAD(a[base + int(r) * p.st_r]));
#endif
    }
    s = tree(s, false);
    for (uint r = tid; r < p.R; r += WG) {
        float y = float(A_LOAD(a[base + int(r) * p.st_r]));
        float gv = float(B_LOAD(gr[gbase + int(r) * p.st_r]));
#if LOG
        o[obase + int(r) * p.st_ro] = O_STORE(gv - exp(y) * s);
#else
        o[obase + int(r) * p.st_ro] = O_STORE(y * (gv - s));
#endif
    }
#else
    float m = -1.0 / 0.0;
    for (uint r = tid; r < p.R; r += WG) m = hlx_max(m, float(A_LOAD(a[base + int(r) * p.st_r])));
    m = tree(m, true);
    float s = 0.0;
    for (uint r = tid; r < p.R; r += WG) s += exp(float(A_LOAD(a[base + int(r) * p.st_r])) - m);
    s = tree(s, false);
#if LOG
    float shift = m + log(s);
#else
    float inv = HLX_DIV(1.0, s);
#endif
    for (uint r = tid; r < p.R; r += WG) {
        float x = float(A_LOAD(a[base + int(r) * p.st_r]));
#if LOG
        o[obase + int(r) * p.st_ro] = O_STORE(x - shift);
#else
        o[obase + int(r) * p.st_ro] = O_STORE(exp(x - m) * inv);
#endif
    }
#endif
}
