// Rows of ROW_LEN contiguous elements, one workgroup of WG threads per row (include after
// dtypes.glsl and vec4.glsl, with VEC, NC, WG and ROW_LEN defined). Thread tid owns the 4-element
// slots s = tid, tid + WG, ... (elements 4s..4s+3); FOR_SLOTS visits them in order, k counting
// them; with NC > 0 the row fits NC slots per thread and the loop is unrolled (register arrays
// indexed by k). The order of a thread's slots, and so of any fold over them, does not depend on
// VEC (vector loads) or NC: a kernel gives the same bits on every path.
#ifndef HLX_ROWS_GLSL
#define HLX_ROWS_GLSL
#extension GL_EXT_control_flow_attributes : require

// Slot s of the row whose first element is e0 (a multiple of 4 with VEC), as a vec4; lanes past
// the row read 0. ROW_LOAD_FN(buf, LD) defines the scalar loader for a buffer without VEC.
#if VEC
#define ROW_LOAD(buf, CVT4, e0, s) CVT4(buf[((e0) >> 2) + (s)])
#define ROW_LOAD_FN(buf, LD)
#else
#define ROW_LOAD(buf, CVT4, e0, s) row_load_##buf(e0, s)
#define ROW_LOAD_FN(buf, LD) vec4 row_load_##buf(uint e0, uint s) { \
    vec4 v = vec4(0.0); uint e = 4u * s; \
    [[unroll]] for (uint j = 0u; j < 4u; ++j) if (e + j < ROW_LEN) v[j] = float(LD(buf[e0 + e + j])); \
    return v; }
#endif

// Store v (O slot) as slot s of the row whose first element is e0.
#if VEC
#define ROW_STORE(buf, e0, s, v) buf[((e0) >> 2) + (s)] = O4_STORE(v)
#else
#define ROW_STORE(buf, e0, s, v) { uint e_ = 4u * (s); vec4 v_ = (v); \
    [[unroll]] for (uint j = 0u; j < 4u; ++j) if (e_ + j < ROW_LEN) buf[(e0) + e_ + j] = O_STORE(v_[j]); }
#endif

// The lanes of slot s inside the row.
bvec4 row_inside(uint s) { uint e = 4u * s; return lessThan(uvec4(e, e + 1u, e + 2u, e + 3u), uvec4(ROW_LEN)); }

// A thread's four lanes summed in a fixed order.
float row_lanes(vec4 a) { return (a.x + a.y) + (a.z + a.w); }

#define ROW_SLOTS ((ROW_LEN + 3u) >> 2u)
#if NC
#define FOR_SLOTS [[unroll]] for (uint k = 0u, s = gl_LocalInvocationID.x; k < NC; ++k, s += WG) if (s < ROW_SLOTS)
#else
#define FOR_SLOTS for (uint k = 0u, s = gl_LocalInvocationID.x; s < ROW_SLOTS; ++k, s += WG)
#endif

// The workgroup's sum of v (a vec2: two sums at once), by a fixed shared-memory tree.
shared vec2 row_red[WG];
vec2 row_sum(vec2 v) {
    uint tid = gl_LocalInvocationID.x;
    row_red[tid] = v;
    barrier();
    [[unroll]] for (uint h = WG / 2u; h > 0u; h >>= 1u) {
        if (tid < h) row_red[tid] = row_red[tid] + row_red[tid + h];
        barrier();
    }
    vec2 r = row_red[0];
    barrier();
    return r;
}
#endif
