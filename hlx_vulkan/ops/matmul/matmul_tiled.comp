#version 450
// C[b] = A[b] @ B[b], register-tiled: a BM x BN output tile per workgroup of (BM/TM) x (BN/TN)
// threads, each thread TM x TN outputs (in 4 x 4 blocks spread over the tile, so that shared
// reads are 16-byte vectors), K in steps of BK through double-buffered shared memory: the
// next K tile is loaded into registers while the current one is multiplied.
//
// Order (ops/matmul.py): a workgroup sums its chunk of k (all of K, or with SPLIT the chunk
// gl_WorkGroupID.z / nbatch of length kc) in order, k ascending from 0, one fma a step;
// padding past the end of K is never multiplied in. Tile shape and vector loads do not change
// it, so every tile gives the same bits.
//
// Strict mode (HLX_STRICT): each K tile records whether it holds a factor in (0, 2^-51); while no
// tile so far did, the workgroup multiplies and adds without the denormal flushes, which then
// change nothing (strict.glsl, hlx_exact_unsafe, has the proof); from the first such tile on, it
// takes the flushed path. Both give the same bits.
//
// Defines (the launcher's): BM BN BK TM TN; PAD: shared rows padded by one 16-byte vector;
// A_COLS / B_COLS: the operand is a transposed view, loaded along its contiguous dimension;
// A_VEC / B_VEC: 4-element vector loads (aligned, every stride but the vector dimension's a
// multiple of 4); with both, a K tile that lies wholly inside the operands is loaded from running
// indices with no bounds checks (on an H100 that alone took 4096^3 from 35 to 38 TFLOP/s);
// O_VEC: 4-element vector stores; SPLIT 1: float32 chunk sums into the partial buffer O, which
// matmul_splitk.comp adds up in chunk order; SPLIT 2: the same in one dispatch (elect.glsl; P_VEC:
// N a multiple of 4, partials in 16-byte units); BIAS, ACT: a linear layer's bias and relu
// applied as each output is stored (epilogue.glsl).
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "float_controls.glsl"
#include "dtypes.glsl"

#ifndef BM
#define BM 64
#define BN 64
#define BK 16
#define TM 4
#define TN 4
#define PAD 1
#endif
#define RT (BM / TM)   // thread rows
#define CT_ (BN / TN)  // thread columns
#define THREADS (RT * CT_)
#define GM (TM / 4)    // 4-row groups per thread, RT * 4 rows apart
#define GN (TN / 4)    // 4-column groups per thread, CT_ * 4 columns apart
layout(local_size_x = CT_, local_size_y = RT) in;

#if A_VEC
#define A_T A_STORAGE4
#define A_W 4
#else
#define A_T A_STORAGE
#define A_W 1
#endif
#if B_VEC
#define B_T B_STORAGE4
#define B_W 4
#else
#define B_T B_STORAGE
#define B_W 1
#endif
#if O_VEC
#define O_T O_STORAGE4
#else
#define O_T O_STORAGE
#endif
layout(std430, binding = 0) writeonly buffer O { O_T c[]; };
layout(std430, binding = 1) readonly buffer A { A_T a[]; };
layout(std430, binding = 2) readonly buffer B { B_T b[]; };

// Mirrors _PUSH in ops/matmul.py; strides in elements, batch stride 0 broadcasts.
layout(push_constant) uniform Params {
    uint M, N, K;
    uint off_a, off_b, off_o;
    int sa_b, sa_m, sa_k;
    int sb_b, sb_k, sb_n;
    uint kc, nbatch;
#if BIAS
    uint off_z;
    int sz;
#endif
#if SPLIT == 2
    uint off_p, off_c;
#endif
} p;
#include "epilogue.glsl"

// k-major tiles.
shared vec4 As[2][BK][BM / 4 + PAD];
shared vec4 Bs[2][BK][BN / 4 + PAD];
#define ELECT_FLAG As[0][0][0].x
#define ELECT_T float
#include "elect.glsl"

// Each thread carries LA vectors (or scalars) of A and LB of B from global memory to shared.
#define LA (BM * BK / A_W / THREADS)
#define LB (BK * BN / B_W / THREADS)
#if LA * A_W * THREADS != BM * BK || LB * B_W * THREADS != BK * BN
#error "tile loads do not divide evenly among the threads"
#endif
vec4 ra[LA], rb[LB];  // vector loads; scalar loads use .x
vec4 acc[TM][GN];

uint tid;
int abase, bbase;
#ifdef HLX_STRICT
// Per stage: k0 + 1 of the last tile stored there that holds a factor in (0, 2^-51). A stage is
// written only before the barrier that precedes its reads, so it needs no reset between tiles.
shared uint unsafe_mark[2];
uint loaded_k0;
#endif
uint row0, col0;

vec4 cvt_a(A_T v) {
#if A_VEC
    return vec4(A_LOAD(v.x), A_LOAD(v.y), A_LOAD(v.z), A_LOAD(v.w));
#else
    return vec4(A_LOAD(v), 0.0, 0.0, 0.0);
#endif
}
vec4 cvt_b(B_T v) {
#if B_VEC
    return vec4(B_LOAD(v.x), B_LOAD(v.y), B_LOAD(v.z), B_LOAD(v.w));
#else
    return vec4(B_LOAD(v), 0.0, 0.0, 0.0);
#endif
}

// Element e of a tile, in the order that puts neighbouring threads on neighbouring addresses.
// A: (m, k); along k unless A_COLS. Out-of-range elements read as 0 (all-or-none for vectors).
void a_coord(uint e, out uint m, out uint k) {
#if A_COLS
    k = e / (BM / A_W); m = (e % (BM / A_W)) * A_W;
#else
    m = e / (BK / A_W); k = (e % (BK / A_W)) * A_W;
#endif
}
void b_coord(uint e, out uint k, out uint n) {
#if B_COLS
    n = e / (BK / B_W); k = (e % (BK / B_W)) * B_W;
#else
    k = e / (BN / B_W); n = (e % (BN / B_W)) * B_W;
#endif
}

#if A_VEC && B_VEC
#define RUNNING 1
// Vector index of this thread's first A and B load in the next K tile; istep: from one of its
// loads to the next; kstep: from one K tile to the next. Set once in main.
int a_next, a_istep, a_kstep, b_next, b_istep, b_kstep;
bool tile_inside;  // the workgroup's rows lie inside M and its columns inside N
#if THREADS % (BK / 4) != 0 || THREADS % (BM / 4) != 0 || THREADS % (BN / 4) != 0
#error "a thread's loads are not a whole number of tile rows apart"
#endif
#endif

void load_tile(uint k0, uint kend) {
#ifdef HLX_STRICT
    loaded_k0 = k0;
#endif
#if RUNNING
    // Keep this shape, the unchecked loads returning early: written as an if/else around the two
    // kinds of load, the same kernel ran 16-24 % slower on the H100.
    if (tile_inside && k0 + BK <= kend) {
        [[unroll]] for (uint i = 0u; i < LA; ++i) ra[i] = cvt_a(a[a_next + int(i) * a_istep]);
        [[unroll]] for (uint i = 0u; i < LB; ++i) rb[i] = cvt_b(b[b_next + int(i) * b_istep]);
        a_next += a_kstep;
        b_next += b_kstep;
        return;
    }
    a_next += a_kstep;
    b_next += b_kstep;
#endif
    [[unroll]] for (uint i = 0u; i < LA; ++i) {
        uint m, k;
        a_coord(tid + i * THREADS, m, k);
        uint gm = row0 + m, gk = k0 + k;
        bool ok = gm < p.M && gk < kend;
        int idx = abase + int(gm) * p.sa_m + int(gk) * p.sa_k;
        ra[i] = ok ? cvt_a(a[idx / A_W]) : vec4(0.0);
    }
    [[unroll]] for (uint i = 0u; i < LB; ++i) {
        uint k, n;
        b_coord(tid + i * THREADS, k, n);
        uint gk = k0 + k, gn = col0 + n;
        bool ok = gk < kend && gn < p.N;
        int idx = bbase + int(gk) * p.sb_k + int(gn) * p.sb_n;
        rb[i] = ok ? cvt_b(b[idx / B_W]) : vec4(0.0);
    }
}

void store_tile(uint s) {
    [[unroll]] for (uint i = 0u; i < LA; ++i) {
        uint m, k;
        a_coord(tid + i * THREADS, m, k);
#if A_COLS && A_VEC
        As[s][k][m / 4u] = ra[i];
#elif A_VEC
        [[unroll]] for (uint j = 0u; j < 4u; ++j) As[s][k + j][m / 4u][m % 4u] = ra[i][j];
#else
        As[s][k][m / 4u][m % 4u] = ra[i].x;
#endif
    }
    [[unroll]] for (uint i = 0u; i < LB; ++i) {
        uint k, n;
        b_coord(tid + i * THREADS, k, n);
#if !B_COLS && B_VEC
        Bs[s][k][n / 4u] = rb[i];
#elif B_VEC
        [[unroll]] for (uint j = 0u; j < 4u; ++j) Bs[s][k + j][n / 4u][n % 4u] = rb[i][j];
#else
        Bs[s][k][n / 4u][n % 4u] = rb[i].x;
#endif
    }
#ifdef HLX_STRICT
    bool unsafe = false;
    [[unroll]] for (uint i = 0u; i < LA; ++i) unsafe = unsafe || hlx_exact_unsafe(ra[i]);
    [[unroll]] for (uint i = 0u; i < LB; ++i) unsafe = unsafe || hlx_exact_unsafe(rb[i]);
    if (unsafe) atomicMax(unsafe_mark[s], loaded_k0 + 1u);
#endif
}

// One step of k: every output of the thread takes one fma, in k order. Written as scalar fmas:
// the same operations as vec4 ones, 1.5 % faster on the H100 (ninth stop); with B's column
// outermost instead, 13 % slower.
void mac(uint s, uint k, uint ty, uint tx) {
    vec4 av[GM], bv[GN];
    [[unroll]] for (uint g = 0u; g < GM; ++g) av[g] = As[s][k][g * RT + ty];
    [[unroll]] for (uint h = 0u; h < GN; ++h) bv[h] = Bs[s][k][h * CT_ + tx];
    [[unroll]] for (uint g = 0u; g < GM; ++g)
        [[unroll]] for (uint r = 0u; r < 4u; ++r)
            [[unroll]] for (uint h = 0u; h < GN; ++h)
                [[unroll]] for (uint c = 0u; c < 4u; ++c)
                    acc[g * 4u + r][h][c] = fma(av[g][r], bv[h][c], acc[g * 4u + r][h][c]);
}

#ifdef HLX_STRICT
// mac's strict step without the flushes (the same operations in the same order: fma is
// ((a) * (b) + (c)) in strict.glsl), for tiles where they change nothing.
void mac_exact(uint s, uint k, uint ty, uint tx) {
    vec4 av[GM], bv[GN];
    [[unroll]] for (uint g = 0u; g < GM; ++g) av[g] = As[s][k][g * RT + ty];
    [[unroll]] for (uint h = 0u; h < GN; ++h) bv[h] = Bs[s][k][h * CT_ + tx];
    [[unroll]] for (uint g = 0u; g < GM; ++g)
        [[unroll]] for (uint r = 0u; r < 4u; ++r)
            [[unroll]] for (uint h = 0u; h < GN; ++h)
                acc[g * 4u + r][h] = hlx_exact_add(hlx_exact_mul(vec4(av[g][r]), bv[h]), acc[g * 4u + r][h]);
}
#endif

// The steps of one K tile: all BK, or the last tile's kend - k0 (no padded steps: order stays exact).
#define TILE_STEPS(MAC) \
    if (more || kend - k0 == BK) { [[unroll]] for (uint k = 0u; k < BK; ++k) MAC(s, k, ty, tx); } \
    else { for (uint k = 0u; k < kend - k0; ++k) MAC(s, k, ty, tx); }

void main() {
    uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
    tid = ty * uint(CT_) + tx;
    row0 = gl_WorkGroupID.y * BM;
    col0 = gl_WorkGroupID.x * BN;
#if SPLIT
    uint batch = gl_WorkGroupID.z % p.nbatch, chunk = gl_WorkGroupID.z / p.nbatch;
    uint kbeg = chunk * p.kc, kend = min(p.K, kbeg + p.kc);
#else
    uint batch = gl_WorkGroupID.z, kbeg = 0u, kend = p.K;
#endif
    abase = int(p.off_a) + int(batch) * p.sa_b;
    bbase = int(p.off_b) + int(batch) * p.sb_b;
    [[unroll]] for (uint i = 0u; i < TM; ++i) [[unroll]] for (uint h = 0u; h < GN; ++h) acc[i][h] = vec4(0.0);
#if RUNNING
    tile_inside = row0 + BM <= p.M && col0 + BN <= p.N;
    {
        uint m, k, n;
        a_coord(tid, m, k);
        a_next = (abase + int(row0 + m) * p.sa_m + int(kbeg + k) * p.sa_k) / 4;
#if A_COLS
        a_istep = THREADS / (BM / 4) * p.sa_k / 4;
#else
        a_istep = THREADS / (BK / 4) * p.sa_m / 4;
#endif
        a_kstep = BK * p.sa_k / 4;
        b_coord(tid, k, n);
        b_next = (bbase + int(kbeg + k) * p.sb_k + int(col0 + n) * p.sb_n) / 4;
#if B_COLS
        b_istep = THREADS / (BK / 4) * p.sb_n / 4;
#else
        b_istep = THREADS / (BN / 4) * p.sb_k / 4;
#endif
        b_kstep = BK * p.sb_k / 4;
    }
#endif

#ifdef HLX_STRICT
    if (tid == 0u) { unsafe_mark[0] = 0u; unsafe_mark[1] = 0u; }
    barrier();
    bool exact = true;  // no factor in (0, 2^-51) since the accumulators were zero
#endif
    load_tile(kbeg, kend);
    store_tile(0u);
    barrier();
    uint s = 0u;
    for (uint k0 = kbeg; k0 < kend; k0 += BK) {
        bool more = k0 + BK < kend;
        if (more) load_tile(k0 + BK, kend);  // in flight while this tile is multiplied
#ifdef HLX_STRICT
        exact = exact && unsafe_mark[s] != k0 + 1u;  // the same for the whole workgroup
        if (exact) {
            TILE_STEPS(mac_exact)
        } else
#endif
        {
            TILE_STEPS(mac)
        }
        if (more) store_tile(s ^ 1u);
        barrier();
        s ^= 1u;
    }

#if SPLIT == 1
    uint cbase = p.off_o + (chunk * p.nbatch + batch) * p.M * p.N;
#else
    uint cbase = p.off_o + batch * p.M * p.N;
#endif
#if SPLIT == 2
    // This chunk's partial; the tile's last chunk to finish adds them all up below.
    uint plane = p.nbatch * p.M * p.N, chunks = gl_NumWorkGroups.z / p.nbatch;
    uint pbase = p.off_p + batch * p.M * p.N;
    [[unroll]] for (uint g = 0u; g < GM; ++g) [[unroll]] for (uint r = 0u; r < 4u; ++r) {
        uint gm = row0 + g * (RT * 4u) + ty * 4u + r;
        if (gm >= p.M) continue;
        [[unroll]] for (uint h = 0u; h < GN; ++h) {
            uint gn = col0 + h * (CT_ * 4u) + tx * 4u, at = pbase + chunk * plane + gm * p.N + gn;
#if P_VEC
            if (gn < p.N) part[at >> 2] = acc[g * 4u + r][h];
#else
            [[unroll]] for (uint j = 0u; j < 4u; ++j) if (gn + j < p.N) set_part(at + j, acc[g * 4u + r][h][j]);
#endif
        }
    }
    if (!last_of_tile((batch * gl_NumWorkGroups.y + gl_WorkGroupID.y) * gl_NumWorkGroups.x + gl_WorkGroupID.x, chunks))
        return;
    // The tile's partials added up in chunk order, into acc.
    for (uint s = 0u; s < chunks; ++s) {
        [[unroll]] for (uint g = 0u; g < GM; ++g) [[unroll]] for (uint r = 0u; r < 4u; ++r) {
            uint gm = row0 + g * (RT * 4u) + ty * 4u + r;
            if (gm >= p.M) continue;
            [[unroll]] for (uint h = 0u; h < GN; ++h) {
                uint gn = col0 + h * (CT_ * 4u) + tx * 4u, at = pbase + s * plane + gm * p.N + gn;
#if P_VEC
                if (gn < p.N) {
                    vec4 q = part[at >> 2];
                    acc[g * 4u + r][h] = s == 0u ? q : acc[g * 4u + r][h] + q;
                }
#else
                [[unroll]] for (uint j = 0u; j < 4u; ++j) if (gn + j < p.N) {
                    float q = part_at(at + j);
                    acc[g * 4u + r][h][j] = s == 0u ? q : acc[g * 4u + r][h][j] + q;
                }
#endif
            }
        }
    }
#endif
    [[unroll]] for (uint g = 0u; g < GM; ++g) [[unroll]] for (uint r = 0u; r < 4u; ++r) {
        uint gm = row0 + g * (RT * 4u) + ty * 4u + r;
        if (gm >= p.M) continue;
        [[unroll]] for (uint h = 0u; h < GN; ++h) {
            uint gn = col0 + h * (CT_ * 4u) + tx * 4u;
            vec4 v = acc[g * 4u + r][h];
#if O_VEC
            if (gn < p.N) {
                v = vec4(EPILOGUE(v.x, gn), EPILOGUE(v.y, gn + 1u), EPILOGUE(v.z, gn + 2u), EPILOGUE(v.w, gn + 3u));
                c[(cbase + gm * p.N + gn) / 4u] = O_STORAGE4(O_STORE(v.x), O_STORE(v.y), O_STORE(v.z), O_STORE(v.w));
            }
#else
            [[unroll]] for (uint j = 0u; j < 4u; ++j)
                if (gn + j < p.N) c[cbase + gm * p.N + gn + j] = O_STORE(EPILOGUE(v[j], gn + j));
#endif
        }
    }
}
