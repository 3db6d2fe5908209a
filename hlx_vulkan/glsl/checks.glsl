// Index checks on the device (see hlx_vulkan/runtime/checks.py). A kernel that checks declares
// the runtime's error words as its storage buffer ERR (role readwrite in its KernelSpec) and a
// push field `site`, then includes this file. A bad index sets, at its site, bit 0 (too large)
// or bit 1 (negative) of the flag word, and keeps the largest too-large and the smallest negative
// value seen: integer atomics on flag words only, which no result depends on. The runtime reads
// the words at the next sync point and raises DeviceIndexError naming the op.
//
//     layout(std430, binding = 3) buffer ERR { int err[]; };
//     #include "checks.glsl"
#ifndef HLX_CHECKS_GLSL
#define HLX_CHECKS_GLSL

void report_bad_index(uint site, int k) {
    if (k >= 0) {
        atomicOr(err[site], 1);
        atomicMax(err[site + 1u], k);
    } else {
        atomicOr(err[site], 2);
        atomicMin(err[site + 2u], k);
    }
}
#endif
