#version 450
// A generator's 64-bit device counter (lo, hi): MODE 0 sets it, MODE 1 adds to it.
#extension GL_GOOGLE_include_directive : require
#include "float_controls.glsl"

layout(local_size_x = 1) in;

// Binding 0: the counter, the kernel's only buffer (see _DeviceCounter in ops/random.py).
layout(std430, binding = 0) buffer Ctr { uint ctr[]; };

// Mirrors COUNTER_PUSH in ops/random.py.
layout(push_constant) uniform Params {
    uint off_ctr;
    uint lo, hi;
} p;

void main() {
#if MODE == 0
    ctr[p.off_ctr] = p.lo;
    ctr[p.off_ctr + 1u] = p.hi;
#else
    uint lo = ctr[p.off_ctr] + p.lo;
    ctr[p.off_ctr + 1u] = ctr[p.off_ctr + 1u] + p.hi + (lo < p.lo ? 1u : 0u);
    ctr[p.off_ctr] = lo;
#endif
}
