#version 450
// Read bandwidth of a buffer of MASK + 1 16-byte units, read over and over (probe_ceilings.py):
// thread t of T reads units t, t + T, t + 2T, ... (wrapping), p.iters of them; the sum is stored
// so no load is optimised away. Small buffers stay in L2, so this is the L2-to-SM rate there.
#extension GL_EXT_control_flow_attributes : require
layout(local_size_x = 256) in;
layout(std430, binding = 0) writeonly buffer O { vec4 o[]; };
layout(std430, binding = 1) readonly buffer A { vec4 a[]; };
layout(push_constant) uniform Params { uint iters, mask, total; } p;
void main() {
    uint t = gl_GlobalInvocationID.x;
    vec4 s0 = vec4(0.0), s1 = vec4(0.0), s2 = vec4(0.0), s3 = vec4(0.0);
    uint i = t;
    for (uint k = 0u; k < p.iters; k += 4u) {
        s0 += a[i & p.mask];
        s1 += a[(i + p.total) & p.mask];
        s2 += a[(i + 2u * p.total) & p.mask];
        s3 += a[(i + 3u * p.total) & p.mask];
        i += 4u * p.total;
    }
    o[t] = s0 + s1 + s2 + s3;
}
