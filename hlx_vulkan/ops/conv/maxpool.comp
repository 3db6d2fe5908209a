#version 450
// Max pooling over (N, C, H, W) windows, as PyTorch: the first maximum of a window in
// kh-then-kw order wins, a NaN wins over any number (the last NaN); positions outside the
// image take no part. Forward: one invocation per output, writing the value and the index
// h*W + w of its input (int32). BACKWARD: one invocation per input element, summing the
// gradients of the outputs whose index names it, kh then kw ascending: fixed order, no atomics.
#extension GL_GOOGLE_include_directive : require
#include "float_controls.glsl"
#include "dtypes.glsl"

layout(local_size_x_id = 0) in;

// Bindings and push fields are declared in ops/pool.py (checked against this shader).
layout(std430, binding = 0) writeonly buffer O { O_STORAGE o[]; };
layout(std430, binding = 1) readonly buffer A { A_STORAGE a[]; };   // forward: input; backward: gradient
#if BACKWARD
layout(std430, binding = 2) readonly buffer I { int idx[]; };       // the forward's indices, contiguous
#else
layout(std430, binding = 2) writeonly buffer I { int idx[]; };
#endif

layout(push_constant) uniform Params {
    uint n;
    uint off_o;
    uint off_a;
    uint off_i;
    int dims[4];    // N, C, H, W
    int win[8];     // KH, KW, OH, OW, sh, sw, ph, pw
    int dil[2];     // dh, dw
    int st_a[4];    // strides of A (forward: the input; backward: the output gradient)
} p;

void main() {
    uint t = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    if (t >= p.n) return;
    int C = p.dims[1], H = p.dims[2], W = p.dims[3];
    int KH = p.win[0], KW = p.win[1], OH = p.win[2], OW = p.win[3];
    int sh = p.win[4], sw = p.win[5], ph = p.win[6], pw = p.win[7];
    int dh = p.dil[0], dw = p.dil[1];
    int ti = int(t);
#if BACKWARD
    int w = ti % W;
    int rest = ti / W;
    int h = rest % H;
    rest /= H;
    int c = rest % C;
    int nn = rest / C;
    int me = h * W + w;
    int ibase = int(p.off_i) + (nn * C + c) * OH * OW;
    int gbase = int(p.off_a) + nn * p.st_a[0] + c * p.st_a[1];
    float acc = 0.0;
    for (int kh = 0; kh < KH; ++kh) {
        int ohs = h + ph - kh * dh;
        if (ohs < 0 || ohs % sh != 0) continue;
        int oh = ohs / sh;
        if (oh >= OH) continue;
        for (int kw = 0; kw < KW; ++kw) {
            int ows = w + pw - kw * dw;
            if (ows < 0 || ows % sw != 0) continue;
            int ow = ows / sw;
            if (ow >= OW) continue;
            if (idx[ibase + oh * OW + ow] == me) acc += float(A_LOAD(a[gbase + oh * p.st_a[2] + ow * p.st_a[3]]));
        }
    }
    o[int(p.off_o) + ti] = O_STORE(OCT(acc));
#else
    int ow = ti % OW;
    int rest = ti / OW;
    int oh = rest % OH;
    rest /= OH;
    int c = rest % C;
    int nn = rest / C;
    int base = int(p.off_a) + nn * p.st_a[0] + c * p.st_a[1];
    float best = -1.0 / 0.0;
    int at = -1;
    for (int kh = 0; kh < KH; ++kh) {
        int h = oh * sh - ph + kh * dh;
        if (h < 0 || h >= H) continue;
        for (int kw = 0; kw < KW; ++kw) {
            int w = ow * sw - pw + kw * dw;
            if (w < 0 || w >= W) continue;
            float v = float(A_LOAD(a[base + h * p.st_a[2] + w * p.st_a[3]]));
            if (at < 0 || v > best || isnan(v)) { best = v; at = h * W + w; }
        }
    }
    o[int(p.off_o) + ti] = O_STORE(OCT(best));
    idx[int(p.off_i) + ti] = at;
#endif
}
