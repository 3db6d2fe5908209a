#version 450
// Implicit-GEMM convolution: the tile loop of matmul_tiled.comp (register tiles, double-buffered
// shared memory, a BK-step of k loaded while the previous one is multiplied) with one operand
// gathered from the NCHW image x as its tile is loaded, so im2col's column matrix,
// cols[g][k][j] = x[n, g*CG + c, oh*SH - ph + kh*DH, ow*SW - pw + kw*DW] (zero outside the image;
// row k = (c*KH + kh)*KW + kw, column j = n*L + oh*OW + ow), is never written.
//
// MODE 0 (forward; also the input gradient at stride 1, on dy and the flipped weight):
//   y[n, g*OG + m, l] = sum over k of W[g*OG + m, k] * cols[g][k][n*L + l]   (K = CG*KH*KW)
// MODE 1 (weight gradient):
//   dW[g*OG + m, k] = sum over j of dy[n, g*OG + m, l] * cols[g][k][j]      (j = n*L + l < NL)
//
// Order: a workgroup sums one chunk of the reduction (all of it, or with SPLIT chunk z / G of
// length kc), index ascending from the chunk's start, one fma a step, from 0; SPLIT writes
// float32 partials (laid out as the output, one copy per chunk) that matmul_splitk.comp adds
// in chunk order. The chunks follow from the problem alone (ops/conv_implicit.py), so no
// tile, grid or batch changes an output's bits; MODE 0's order is matmul.py's, so its bits
// equal those of im2col followed by the matmul.
//
// Defines (ops/conv_implicit.py): MODE; BM BN BK TM TN PAD (a tile); KH KW SH SW DH DW (the
// window: constants, so splitting k into (c, kh, kw) is multiplies and shifts); A_VEC: MODE 0's
// weight rows loaded 4 at a time; O_VEC: 4-element vector stores; SPLIT.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "float_controls.glsl"
#include "dtypes.glsl"

#define RT (BM / TM)
#define CT_ (BN / TN)
#define THREADS (RT * CT_)
#define GM (TM / 4)
#define GN (TN / 4)
#define KK (KH * KW)
layout(local_size_x = CT_, local_size_y = RT) in;

#if A_VEC
#define A_T A_STORAGE4
#define A_W 4
#else
#define A_T A_STORAGE
#define A_W 1
#endif
#if O_VEC
#define O_T O_STORAGE4
#else
#define O_T O_STORAGE
#endif
layout(std430, binding = 0) writeonly buffer O { O_T y[]; };
// MODE 0: the weight (O, K), contiguous; MODE 1: dy (N, O, OH, OW), contiguous.
layout(std430, binding = 1) readonly buffer A { A_T a[]; };
layout(std430, binding = 2) readonly buffer B { B_STORAGE b[]; };   // the image x (N, C, H, W), any strides

// Mirrors _PUSH in ops/conv_implicit.py.
layout(push_constant) uniform Params {
    uint off_o, off_a, off_b;
    int OG, K, NL;      // output channels per group, CG*KH*KW, N*OH*OW
    int L, OW, CO;      // output pixels per image, output width, output channels (all groups)
    int H, W, ph, pw;   // image size and padding
    int sn, sc, sh, sw; // image strides
    int cg;             // input channels per group
    uint kc, nsplit;
} p;

shared vec4 As[2][BK][BM / 4 + PAD];
shared vec4 Bs[2][BK][BN / 4 + PAD];

#define LA (BM * BK / A_W / THREADS)
#define LB (BK * BN / THREADS)
#if LA * A_W * THREADS != BM * BK || LB * THREADS != BK * BN || THREADS % BN != 0 || THREADS % BK != 0
#error "tile loads do not divide evenly among the threads"
#endif
#if MODE == 1 && A_VEC
#error "MODE 1 loads dy one element at a time"
#endif
vec4 ra[LA];
float rb[LB];
vec4 acc[TM][GN];

uint tid;
uint row0, col0;
#if MODE == 0
int abase;
// The one column j of the image tile this thread loads (THREADS is a multiple of BN): its
// image's base address, the window's top-left corner, and whether it exists.
int bbase, ih0, iw0;
bool bvalid;
#else
// The one pixel j = kbeg + tid % BK + BK * step this thread loads, as (image, oh, ow), moved on
// by BK each step; its rows m (of dy) and k (of the columns), fixed.
int jn, joh, jow, OH;
int arow[LA], boff[LB], bkh[LB], bkw[LB];
#endif

vec4 cvt_a(A_T v) {
#if A_VEC
    return vec4(A_LOAD(v.x), A_LOAD(v.y), A_LOAD(v.z), A_LOAD(v.w));
#else
    return vec4(A_LOAD(v), 0.0, 0.0, 0.0);
#endif
}

#if MODE == 0
void load_tile(uint k0, uint kend) {
    [[unroll]] for (uint i = 0u; i < LA; ++i) {
        uint e = tid + i * THREADS;
        uint m = e / (BK / A_W), k = (e % (BK / A_W)) * A_W;
        uint gm = row0 + m, gk = k0 + k;
        bool ok = gm < uint(p.OG) && gk < kend;
        int idx = abase + int(gm) * p.K + int(gk);
        ra[i] = ok ? cvt_a(a[idx / A_W]) : vec4(0.0);
    }
    [[unroll]] for (uint i = 0u; i < LB; ++i) {
        uint gk = k0 + tid / BN + i * (THREADS / BN);
        uint c = gk / KK, r = gk % KK;
        uint kh = r / KW, kw = r % KW;
        int ih = ih0 + int(kh) * DH, iw = iw0 + int(kw) * DW;
        bool ok = bvalid && gk < kend && uint(ih) < uint(p.H) && uint(iw) < uint(p.W);
        rb[i] = ok ? float(B_LOAD(b[bbase + int(c) * p.sc + ih * p.sh + iw * p.sw])) : 0.0;
    }
}
#else
void load_tile(uint k0, uint kend) {
    bool jok = k0 + tid % BK < kend;
    int jb = jn * p.CO * p.L + joh * p.OW + jow;
    [[unroll]] for (uint i = 0u; i < LA; ++i)
        ra[i] = jok && arow[i] >= 0 ? vec4(A_LOAD(a[int(p.off_a) + jb + arow[i]]), 0.0, 0.0, 0.0) : vec4(0.0);
    int ih0 = joh * SH - p.ph, iw0 = jow * SW - p.pw;
    int xb = jn * p.sn + ih0 * p.sh + iw0 * p.sw;
    [[unroll]] for (uint i = 0u; i < LB; ++i) {
        int ih = ih0 + bkh[i], iw = iw0 + bkw[i];
        bool ok = jok && boff[i] >= 0 && uint(ih) < uint(p.H) && uint(iw) < uint(p.W);
        rb[i] = ok ? float(B_LOAD(b[xb + boff[i]])) : 0.0;
    }
    // On to this thread's pixel of the next step: BK further along (n, oh, ow).
    jow += BK;
    while (jow >= p.OW) { jow -= p.OW; ++joh; }
    while (joh >= OH) { joh -= OH; ++jn; }
}
#endif

void store_tile(uint s) {
    [[unroll]] for (uint i = 0u; i < LA; ++i) {
        uint e = tid + i * THREADS;
        uint m = e / (BK / A_W), k = (e % (BK / A_W)) * A_W;
#if A_VEC
        [[unroll]] for (uint j = 0u; j < 4u; ++j) As[s][k + j][m / 4u][m % 4u] = ra[i][j];
#else
        As[s][k][m / 4u][m % 4u] = ra[i].x;
#endif
    }
#if MODE == 0
    uint n = tid % BN;
    [[unroll]] for (uint i = 0u; i < LB; ++i) Bs[s][tid / BN + i * (THREADS / BN)][n / 4u][n % 4u] = rb[i];
#else
    [[unroll]] for (uint i = 0u; i < LB; ++i) {
        uint n = tid / BK + i * (THREADS / BK);
        Bs[s][tid % BK][n / 4u][n % 4u] = rb[i];
    }
#endif
}

void mac(uint s, uint k, uint ty, uint tx) {
    vec4 av[GM], bv[GN];
    [[unroll]] for (uint g = 0u; g < GM; ++g) av[g] = As[s][k][g * RT + ty];
    [[unroll]] for (uint h = 0u; h < GN; ++h) bv[h] = Bs[s][k][h * CT_ + tx];
    [[unroll]] for (uint g = 0u; g < GM; ++g)
        [[unroll]] for (uint r = 0u; r < 4u; ++r)
            [[unroll]] for (uint h = 0u; h < GN; ++h)
                acc[g * 4u + r][h] = fma(vec4(av[g][r]), bv[h], acc[g * 4u + r][h]);
}

void main() {
    uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
    tid = ty * uint(CT_) + tx;
    row0 = gl_WorkGroupID.y * BM;
    col0 = gl_WorkGroupID.x * BN;
    uint group = gl_WorkGroupID.z % uint(p.CO / p.OG);
#if MODE == 0
    uint red = uint(p.K);
#else
    uint red = uint(p.NL);
#endif
#if SPLIT
    uint chunk = gl_WorkGroupID.z / uint(p.CO / p.OG);
    uint kbeg = chunk * p.kc, kend = min(red, kbeg + p.kc);
#else
    uint kbeg = 0u, kend = red;
#endif
#if MODE == 0
    abase = int(p.off_a) + int(group) * p.OG * p.K;
    int col = int(col0 + tid % BN);
    bvalid = col < p.NL;
    int img = col / p.L, l = col - img * p.L;
    int oh = l / p.OW, ow = l - oh * p.OW;
    ih0 = oh * SH - p.ph;
    iw0 = ow * SW - p.pw;
    bbase = int(p.off_b) + img * p.sn + int(group) * p.cg * p.sc;
#else
    OH = p.L / p.OW;
    int j = int(kbeg + tid % BK);
    jn = j / p.L;
    int l = j - jn * p.L;
    joh = l / p.OW;
    jow = l - joh * p.OW;
    [[unroll]] for (uint i = 0u; i < LA; ++i) {
        uint m = row0 + tid / BK + i * (THREADS / BK);
        arow[i] = m < uint(p.OG) ? int(group * uint(p.OG) + m) * p.L : -1;
    }
    [[unroll]] for (uint i = 0u; i < LB; ++i) {
        uint k = col0 + tid / BK + i * (THREADS / BK);
        uint c = k / KK, r = k % KK;
        uint kh = r / KW, kw = r % KW;
        boff[i] = k < uint(p.K) ? int(p.off_b) + int(group * uint(p.cg) + c) * p.sc + int(kh) * DH * p.sh +
                                  int(kw) * DW * p.sw : -1;
        bkh[i] = int(kh) * DH;
        bkw[i] = int(kw) * DW;
    }
#endif
    [[unroll]] for (uint i = 0u; i < TM; ++i) [[unroll]] for (uint h = 0u; h < GN; ++h) acc[i][h] = vec4(0.0);

    load_tile(kbeg, kend);
    store_tile(0u);
    barrier();
    uint s = 0u;
    for (uint k0 = kbeg; k0 < kend; k0 += BK) {
        bool more = k0 + BK < kend;
        if (more) load_tile(k0 + BK, kend);
        if (more || kend - k0 == BK) {
            [[unroll]] for (uint k = 0u; k < BK; ++k) mac(s, k, ty, tx);
        } else {
            for (uint k = 0u; k < kend - k0; ++k) mac(s, k, ty, tx);  // no padded steps: the order stays exact
        }
        if (more) store_tile(s ^ 1u);
        barrier();
        s ^= 1u;
    }

#if MODE == 0
#if SPLIT
    uint obase = p.off_o + chunk * uint(p.NL) * uint(p.CO);
#else
    uint obase = p.off_o;
#endif
    [[unroll]] for (uint h = 0u; h < GN; ++h) {
        uint gn = col0 + h * (CT_ * 4u) + tx * 4u;
        if (gn >= uint(p.NL)) continue;
        // Output column gn is pixel l of image img: y[img, group*OG + m, l].
        uint im = gn / uint(p.L), lo = gn - im * uint(p.L);
        uint cbase = obase + (im * uint(p.CO) + group * uint(p.OG)) * uint(p.L) + lo;
        [[unroll]] for (uint g = 0u; g < GM; ++g) [[unroll]] for (uint r = 0u; r < 4u; ++r) {
            uint gm = row0 + g * (RT * 4u) + ty * 4u + r;
            if (gm >= uint(p.OG)) continue;
            vec4 v = acc[g * 4u + r][h];
#if O_VEC
            y[(cbase + gm * uint(p.L)) / 4u] = O_STORAGE4(O_STORE(v.x), O_STORE(v.y), O_STORE(v.z), O_STORE(v.w));
#else
            [[unroll]] for (uint j = 0u; j < 4u; ++j) {
                uint cj = gn + j;
                if (cj >= uint(p.NL)) break;
                uint imj = cj / uint(p.L), lj = cj - imj * uint(p.L);
                y[obase + (imj * uint(p.CO) + group * uint(p.OG) + gm) * uint(p.L) + lj] = O_STORE(v[j]);
            }
#endif
        }
    }
#else
    // dW (O, K), row-major; SPLIT: one copy per chunk.
#if SPLIT
    uint obase = p.off_o + chunk * uint(p.CO) * uint(p.K);
#else
    uint obase = p.off_o;
#endif
    [[unroll]] for (uint g = 0u; g < GM; ++g) [[unroll]] for (uint r = 0u; r < 4u; ++r) {
        uint gm = row0 + g * (RT * 4u) + ty * 4u + r;
        if (gm >= uint(p.OG)) continue;
        uint cbase = obase + (group * uint(p.OG) + gm) * uint(p.K);
        [[unroll]] for (uint h = 0u; h < GN; ++h) {
            uint gn = col0 + h * (CT_ * 4u) + tx * 4u;
            vec4 v = acc[g * 4u + r][h];
#if O_VEC
            if (gn < uint(p.K)) y[(cbase + gn) / 4u] = O_STORAGE4(O_STORE(v.x), O_STORE(v.y), O_STORE(v.z),
                                                                  O_STORE(v.w));
#else
            [[unroll]] for (uint j = 0u; j < 4u; ++j)
                if (gn + j < uint(p.K)) y[cbase + gn + j] = O_STORE(v[j]);
#endif
        }
    }
#endif
}
