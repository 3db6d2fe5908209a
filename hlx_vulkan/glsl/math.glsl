// Scalar functions the kernels share. Written with explicit formulas so every
// device evaluates the same expression.
#ifndef HLX_MATH_GLSL
#define HLX_MATH_GLSL

float hlx_sigmoid(float x) {
    // Split by sign so exp never overflows.
    if (x >= 0.0) { return HLX_DIV(1.0, 1.0 + exp(-x)); }
    float e = exp(x);
    return HLX_DIV(e, 1.0 + e);
}

float hlx_tanh(float x) {
    // tanh(x) = sign(x) (1 - e^{-2|x|}) / (1 + e^{-2|x|}); exact 0 and NaN pass through.
    if (isnan(x)) return x;
#ifdef HLX_STRICT
    return strict_tanh(x);
#endif
    float e = exp(-2.0 * abs(x));
    float t = (1.0 - e) / (1.0 + e);
    return x < 0.0 ? -t : (x == 0.0 ? x : t);
}

// erf with |error| < 1.2e-7: Numerical Recipes' erfc Chebyshev fit.
float hlx_erf(float x) {
    float z = abs(x);
    float t = HLX_DIV(1.0, 1.0 + 0.5 * z);
    float r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
              t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
              t * (-0.82215223 + t * 0.17087277)))))))));
    float e = 1.0 - r;
    return x < 0.0 ? -e : e;
}

float hlx_gelu_tanh(float x) {
    return 0.5 * x * (1.0 + hlx_tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}

float hlx_gelu_erf(float x) {
    return 0.5 * x * (1.0 + hlx_erf(x * 0.7071067811865476));
}

// Derivatives of the two GELU forms, for the backward pass.
float hlx_gelu_tanh_grad(float x) {
    float u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    float t = hlx_tanh(u);
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * 0.7978845608028654 * (1.0 + 0.134145 * x * x);
}

float hlx_gelu_erf_grad(float x) {
    // Phi(x) + x phi(x), phi the standard normal density.
    return 0.5 * (1.0 + hlx_erf(x * 0.7071067811865476)) + x * 0.3989422804014327 * exp(-0.5 * x * x);
}

// numpy semantics: NaN wins.
float hlx_max(float a, float b) { return (isnan(a) || a > b) ? a : b; }
float hlx_min(float a, float b) { return (isnan(a) || a < b) ? a : b; }
int hlx_max(int a, int b) { return max(a, b); }
int hlx_min(int a, int b) { return min(a, b); }
uint hlx_max(uint a, uint b) { return max(a, b); }
uint hlx_min(uint a, uint b) { return min(a, b); }
#ifdef HLX_INT64
int64_t hlx_max(int64_t a, int64_t b) { return a > b ? a : b; }
int64_t hlx_min(int64_t a, int64_t b) { return a < b ? a : b; }
#endif

// Integer floor division and remainder with the divisor's sign (Python's and torch's // and %).
// The launcher refuses a zero divisor before recording.
int hlx_floordiv(int a, int b) { int q = a / b; return (q * b != a && ((a < 0) != (b < 0))) ? q - 1 : q; }
int hlx_mod(int a, int b) { int r = a - (a / b) * b; return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r; }
uint hlx_floordiv(uint a, uint b) { return a / b; }
uint hlx_mod(uint a, uint b) { return a - (a / b) * b; }
// Float forms as numpy: floor(a / b) and a - b * floor(a / b).
float hlx_floordiv(float a, float b) { return floor(HLX_DIV(a, b)); }
float hlx_mod(float a, float b) {
    float r = a - b * floor(HLX_DIV(a, b));
    return (b != 0.0 && r == b) ? 0.0 : r;
}
#if defined(HLX_INT64) && defined(HLX_STRICT)
int64_t hlx_div(int64_t a, int64_t b) { return a / b; }
#endif
#ifdef HLX_INT64
int64_t hlx_floordiv(int64_t a, int64_t b) { int64_t q = a / b; return (q * b != a && ((a < 0) != (b < 0))) ? q - 1 : q; }
int64_t hlx_mod(int64_t a, int64_t b) { int64_t r = a - (a / b) * b; return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r; }
#endif

// Integer power by squaring for an exponent >= 0 (wraps like C, as torch).
#define HLX_IPOW(T) T hlx_ipow(T x, T e) { T r = T(1); while (e > T(0)) { if ((e & T(1)) != T(0)) r *= x; x *= x; e >>= T(1); } return r; }
HLX_IPOW(int)
HLX_IPOW(uint)
#ifdef HLX_INT64
HLX_IPOW(int64_t)
#endif

float hlx_pow(float x, float y) {
    // GLSL pow is undefined for x < 0; follow numpy for integral exponents.
    if (y == 0.0) return 1.0;
    if (x < 0.0 && floor(y) == y) {
        float m = pow(-x, y);
#ifdef HLX_STRICT
        return y - 2.0 * floor(y * 0.5) == 1.0 ? -m : m;  // mod(y, 2.0) without division
#else
        return mod(y, 2.0) == 1.0 ? -m : m;
#endif
    }
    if (x == 0.0) return y > 0.0 ? 0.0 : 1.0 / 0.0;
    return pow(x, y);
}
#endif
