// Strict mode (hlx_vulkan/strict_mode.py): float_controls.glsl includes this file when the kernel is
// compiled with HLX_STRICT. Division, sqrt, exp, log, pow, tanh, sin and cos are computed here
// from +, - and * alone, which Vulkan rounds correctly; the compiler's strict pass
// (strict_spirv.py) marks every one NoContraction and flushes denormal results to a signed
// zero, so these give the same bits on every device. Inputs are never denormal (the pass
// flushes every value read from a buffer). Accuracy against float64, for normal inputs and
// outputs: hlx_div and strict_sqrt <= 1 ULP, strict_exp and strict_log <= 2 ULP, strict_rsqrt
// <= 2 ULP, strict_tanh <= 3 ULP, strict_sin/cos <= 3 ULP for |x| < 65536 (NaN
// beyond), strict_pow <= 2 + 1.5 |y ln x| ULP. Results below 2^-126 in magnitude are zeros.
//
// After this file, the builtins exp, log, sqrt, inversesqrt, pow, sin, cos, tanh and fma name
// these functions (macros): a kernel needs no change beyond writing division as HLX_DIV(a, b).
#ifndef HLX_STRICT_GLSL
#define HLX_STRICT_GLSL
#include "repro_math.glsl"  // repro_log

#define HLX_F32_INF uintBitsToFloat(0x7F800000u)
#define HLX_F32_NAN uintBitsToFloat(0x7FC00000u)

// 2^e for -126 <= e <= 127, exactly.
float strict_exp2i(int e) { return uintBitsToFloat(uint(e + 127) << 23); }

// x * 2^e in two exact steps, one rounding at most (overflow gives inf, underflow a zero).
float strict_scale(float x, int e) {
    int e1 = clamp(e, -100, 100);
    int e2 = clamp(e - e1, -126, 127);
    return (x * strict_exp2i(e1)) * strict_exp2i(e2);
}

float strict_copysign(float x, float s) {
    return uintBitsToFloat((floatBitsToUint(x) & 0x7FFFFFFFu) | (floatBitsToUint(s) & 0x80000000u));
}

// a * b = hi + lo exactly (Dekker's product by Veltkamp splitting; no fma).
void strict_two_prod(float a, float b, out float hi, out float lo) {
    hi = a * b;
    float ca = 4097.0 * a, cb = 4097.0 * b;
    float ah = ca - (ca - a), bh = cb - (cb - b);
    float al = a - ah, bl = b - bh;
    lo = ((ah * bh - hi) + ah * bl + al * bh) + al * bl;
}

// Mantissa in [1, 2) and exponent of a normal float.
float strict_frexp1(float x, out int e) {
    uint u = floatBitsToUint(x);
    e = int((u >> 23) & 0xFFu) - 127;
    return uintBitsToFloat((u & 0x007FFFFFu) | 0x3F800000u);
}

// 1/m for m in [1, 2): a linear start and four Newton steps.
float strict_recip12(float m) {
    float r = 1.4117647058823529 - 0.47058823529411764 * m;
    r = r * (2.0 - m * r);
    r = r * (2.0 - m * r);
    r = r * (2.0 - m * r);
    r = r * (2.0 - m * r);
    return r;
}

float hlx_div(float a, float b) {
    if (isnan(a) || isnan(b)) return HLX_F32_NAN;
    float s = uintBitsToFloat((floatBitsToUint(a) ^ floatBitsToUint(b)) & 0x80000000u);  // signed zero
    if (isinf(b)) return isinf(a) ? HLX_F32_NAN : s;
    if (b == 0.0) return a == 0.0 ? HLX_F32_NAN : strict_copysign(HLX_F32_INF, s);
    if (isinf(a)) return strict_copysign(HLX_F32_INF, s);
    if (a == 0.0) return s;
    int ea, eb;
    float ma = strict_frexp1(abs(a), ea), mb = strict_frexp1(abs(b), eb);
    float r = strict_recip12(mb);
    float q = ma * r;                       // in (0.5, 2)
    float hi, lo;
    strict_two_prod(q, mb, hi, lo);
    float rem = (ma - hi) - lo;             // ma - q * mb, ma - hi exact
    q = q + rem * r;
    return strict_copysign(strict_scale(q, ea - eb), s);
}
int hlx_div(int a, int b) { return a / b; }
uint hlx_div(uint a, uint b) { return a / b; }

float strict_sqrt(float v) {
    if (isnan(v) || v < 0.0) return HLX_F32_NAN;
    if (v == 0.0 || isinf(v)) return v;
    int e;
    float m = strict_frexp1(v, e);
    if ((e & 1) != 0) { m = m * 2.0; e -= 1; }  // m in [1, 4), e even
    // 1/sqrt(m): a linear start on [1, 4) and Newton steps.
    float y = 1.2 - 0.15 * m;
    y = y * (1.5 - 0.5 * m * y * y);
    y = y * (1.5 - 0.5 * m * y * y);
    y = y * (1.5 - 0.5 * m * y * y);
    y = y * (1.5 - 0.5 * m * y * y);
    float s = m * y;
    float hi, lo;
    strict_two_prod(s, s, hi, lo);
    s = s + ((m - hi) - lo) * (0.5 * y);
    return strict_scale(s, e / 2);
}

float strict_rsqrt(float v) { return hlx_div(1.0, strict_sqrt(v)); }

// Cephes expf: e^x = 2^n e^r, r = x - n ln 2 in two parts, a degree-6 polynomial.
float strict_exp(float x) {
    if (isnan(x)) return x;
    if (x > 88.72283935546875) return HLX_F32_INF;
    if (x < -87.33654475055310898657) return 0.0;
    float n = floor(x * 1.44269504088896341 + 0.5);
    float r = x - n * 0.693359375;
    r = r - n * -2.12194440e-4;
    float z = r * r;
    float p = 1.9875691500E-4;
    p = p * r + 1.3981999507E-3;
    p = p * r + 8.3334519073E-3;
    p = p * r + 4.1665795894E-2;
    p = p * r + 1.6666665459E-1;
    p = p * r + 5.0000001201E-1;
    p = p * z + r + 1.0;
    return strict_scale(p, int(n));
}

// Cephes logf (repro_math.glsl) with the special values.
float strict_log(float x) {
    if (isnan(x) || x < 0.0) return HLX_F32_NAN;
    if (x == 0.0) return -HLX_F32_INF;
    if (isinf(x)) return x;
    return repro_log(x);
}

// x^y with GLSL's domain (x >= 0; math.glsl's hlx_pow handles negative bases): exp(y ln x)
// with y ln x as an exact product's high and low parts.
float strict_pow(float x, float y) {
    if (y == 0.0) return 1.0;
    if (isnan(x) || isnan(y) || x < 0.0) return HLX_F32_NAN;
    if (x == 1.0) return 1.0;
    if (x == 0.0) return y > 0.0 ? 0.0 : HLX_F32_INF;
    if (isinf(y)) return (x > 1.0) == (y > 0.0) ? HLX_F32_INF : 0.0;
    if (isinf(x)) return y > 0.0 ? HLX_F32_INF : 0.0;
    float hi, lo;
    strict_two_prod(y, strict_log(x), hi, lo);
    if (hi > 88.8) return HLX_F32_INF;
    if (hi < -87.4) return 0.0;
    return strict_exp(hi) * (1.0 + lo);
}

// Cephes tanhf: a polynomial below 0.625, 1 - 2 / (e^{2|x|} + 1) above; exact 0 and NaN pass.
float strict_tanh(float x) {
    if (isnan(x) || x == 0.0) return x;
    float z = abs(x);
    float t;
    if (z < 0.625) {
        float s = z * z;
        float p = -5.70498872745E-3;
        p = p * s + 2.06390887954E-2;
        p = p * s - 5.37397155531E-2;
        p = p * s + 1.33314422036E-1;
        p = p * s - 3.33332819422E-1;
        t = z + z * s * p;
    } else if (z > 9.5) {
        t = 1.0;
    } else {
        t = 1.0 - hlx_div(2.0, strict_exp(z + z) + 1.0);
    }
    return x < 0.0 ? -t : t;
}

// sin and cos: Cody-Waite reduction by pi/2 in four parts (three of 8 bits, so k * part is exact
// for k < 2^16), Cephes minimax polynomials on [-pi/4, pi/4]. Defined for |x| < 65536: larger
// arguments give NaN (no reduction of this precision holds there), never an approximate value.
vec2 strict_sincos(float x) {
    if (isnan(x) || !(abs(x) < 65536.0)) return vec2(HLX_F32_NAN);
    float k = floor(x * 0.63661977236758134 + 0.5);
    float r = x - k * 1.5703125;
    r = r - k * 0.000484466552734375;
    r = r - k * -6.407499313354492e-07;
    r = r - k * 9.92093629470503e-10;
    float z = r * r;
    float s = -1.9515295891E-4;
    s = s * z + 8.3321608736E-3;
    s = s * z - 1.6666654611E-1;
    s = r + r * z * s;
    float c = 2.443315711809948E-5;
    c = c * z - 1.388731625493765E-3;
    c = c * z + 4.166664568298827E-2;
    c = 1.0 - 0.5 * z + z * z * c;
    int q = int(k - 4.0 * floor(k * 0.25));
    if (q == 0) return vec2(s, c);
    if (q == 1) return vec2(c, -s);
    if (q == 2) return vec2(-s, -c);
    return vec2(-c, s);
}
float strict_sin(float x) { return x == 0.0 ? x : strict_sincos(x).x; }
float strict_cos(float x) { return strict_sincos(x).y; }

// Component by component, for kernels that work on vectors (16-byte loads): the same bits as
// the scalar functions on each element.
#define HLX_STRICT_VEC(T, N)                                                                   \
    T hlx_div(T a, T b) { T r; for (int k = 0; k < N; k++) r[k] = hlx_div(a[k], b[k]); return r; } \
    T hlx_div(T a, float b) { return hlx_div(a, T(b)); }                                        \
    T hlx_div(float a, T b) { return hlx_div(T(a), b); }                                        \
    T strict_sqrt(T v) { T r; for (int k = 0; k < N; k++) r[k] = strict_sqrt(v[k]); return r; }   \
    T strict_rsqrt(T v) { T r; for (int k = 0; k < N; k++) r[k] = strict_rsqrt(v[k]); return r; } \
    T strict_exp(T v) { T r; for (int k = 0; k < N; k++) r[k] = strict_exp(v[k]); return r; }     \
    T strict_log(T v) { T r; for (int k = 0; k < N; k++) r[k] = strict_log(v[k]); return r; }
HLX_STRICT_VEC(vec2, 2)
HLX_STRICT_VEC(vec4, 4)

// hlx_exact_mul(a, b) and hlx_exact_add(a, b): a * b and a + b, correctly rounded and never fused,
// WITHOUT the denormal flush that strict_spirv.py puts after every other float result (the pass
// turns these instructions of its set into OpFMul / OpFAdd). A kernel calls them only where it has
// proven that no operand and no result is denormal: there the flush would change nothing.
spirv_instruction(set = "HLX.strict.exact", id = 1) float hlx_exact_mul(float a, float b);
spirv_instruction(set = "HLX.strict.exact", id = 1) vec4 hlx_exact_mul(vec4 a, vec4 b);
spirv_instruction(set = "HLX.strict.exact", id = 2) float hlx_exact_add(float a, float b);
spirv_instruction(set = "HLX.strict.exact", id = 2) vec4 hlx_exact_add(vec4 a, vec4 b);

// The unflushed path of a strict sum of products (matmul/), and its proof. Let q = 2^-125. If no
// factor is in (0, 2^-51) in magnitude (zeros, |x| >= 2^-51, inf and NaN pass), a finite nonzero
// product has |a * b| >= 2^-102, so its rounding is a float >= 2^-102: a multiple of its ulp, which
// is >= 2^-125 = q. If two addends are multiples of q, so is their exact sum; below 2^-101 it is a
// multiple of q with at most 24 significant bits, hence exact, and above it rounds to a float
// >= 2^-101, whose ulp is a multiple of q. So a sum from a zero accumulator of such products stays
// on the grid of q: each product and partial sum is zero, inf, NaN or at least q = 2^-125 > 2^-126
// in magnitude, never denormal, and the flush of each would return it unchanged. A kernel takes the
// unflushed path only while every factor so far passed hlx_exact_unsafe (false) since the
// accumulator was zero; otherwise it takes the flushed path (the same bits wherever both apply).
bool hlx_exact_unsafe(vec4 v) {  // a component in (0, 2^-51): bits - 1 below 2^-51's bits - 1 (zeros wrap)
    return any(lessThan((floatBitsToUint(v) & 0x7FFFFFFFu) - 1u, uvec4((76u << 23) - 1u)));
}

#define exp(x) strict_exp(x)
#define log(x) strict_log(x)
#define sqrt(x) strict_sqrt(x)
#define inversesqrt(x) strict_rsqrt(x)
#define pow(x, y) strict_pow(x, y)
#define tanh(x) strict_tanh(x)
#define sin(x) strict_sin(x)
#define cos(x) strict_cos(x)
#define fma(a, b, c) ((a) * (b) + (c))
#define HLX_DIV(a, b) hlx_div(a, b)
#endif
