#version 450
// im2col and its adjoint col2im for convolutions and pooling (MODE 0 and 1).
// The image is (N, C, H, W); the columns are logically (N, C*KH*KW, OH*OW), row
// r = (c*KH + kh)*KW + kw holding image[n, c, oh*sh - ph + kh*dh, ow*sw - pw + kw*dw]
// (zero outside the image) at column oh*OW + ow.
// MODE 0 (im2col): one invocation per column element, any image strides, any column strides.
// MODE 1 (col2im): one invocation per image element, summing the column elements that read it,
// kh then kw ascending: a fixed order, no atomics. The image it writes is contiguous.
#extension GL_GOOGLE_include_directive : require
#include "float_controls.glsl"
#include "dtypes.glsl"

layout(local_size_x_id = 0) in;

// Bindings and push fields are declared in ops/conv.py (checked against this shader).
layout(std430, binding = 0) writeonly buffer O { O_STORAGE o[]; };
layout(std430, binding = 1) readonly buffer A { A_STORAGE a[]; };

layout(push_constant) uniform Params {
    uint n;         // invocations
    uint off_o;
    uint off_a;
    int dims[4];    // N, C, H, W
    int win[8];     // KH, KW, OH, OW, sh, sw, ph, pw
    int dil[2];     // dh, dw
    int st_img[4];  // image strides (MODE 0: the input's; MODE 1: unused, the output is contiguous)
    int st_col[3];  // column strides along n, row, column
} p;

void main() {
    uint t = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    if (t >= p.n) return;
    int N = p.dims[0], C = p.dims[1], H = p.dims[2], W = p.dims[3];
    int KH = p.win[0], KW = p.win[1], OH = p.win[2], OW = p.win[3];
    int sh = p.win[4], sw = p.win[5], ph = p.win[6], pw = p.win[7];
    int dh = p.dil[0], dw = p.dil[1];
    int ti = int(t);
#if MODE == 0
    int L = OH * OW;
    int l = ti % L;
    int rest = ti / L;
    int kw = rest % KW;
    rest /= KW;
    int kh = rest % KH;
    rest /= KH;
    int c = rest % C;
    int nn = rest / C;
    int oh = l / OW, ow = l % OW;
    int h = oh * sh - ph + kh * dh;
    int w = ow * sw - pw + kw * dw;
    CT v = CT(0);
    if (h >= 0 && h < H && w >= 0 && w < W)
        v = A_LOAD(a[int(p.off_a) + nn * p.st_img[0] + c * p.st_img[1] + h * p.st_img[2] + w * p.st_img[3]]);
    int r = (c * KH + kh) * KW + kw;
    o[int(p.off_o) + nn * p.st_col[0] + r * p.st_col[1] + l * p.st_col[2]] = O_STORE(OCT(v));
#else
    int w = ti % W;
    int rest = ti / W;
    int h = rest % H;
    rest /= H;
    int c = rest % C;
    int nn = rest / C;
    float acc = 0.0;
    int base = int(p.off_a) + nn * p.st_col[0];
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
            int r = (c * KH + kh) * KW + kw;
            acc += float(A_LOAD(a[base + r * p.st_col[1] + (oh * OW + ow) * p.st_col[2]]));
        }
    }
    o[int(p.off_o) + ti] = O_STORE(OCT(acc));
#endif
}
