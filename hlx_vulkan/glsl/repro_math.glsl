// log, sqrt and sin/cos from additions and multiplications alone, marked precise so no
// device fuses them into FMAs. Vulkan rounds +, - and * correctly but lets exp, log,
// sqrt, division and the trigonometric built-ins differ by a few ULP between drivers;
// these give the same bits on every device. Accuracy: a few ULP over the ranges used.
#ifndef HLX_REPRO_MATH_GLSL
#define HLX_REPRO_MATH_GLSL

// Natural log of x > 0 (normal numbers): Cephes logf's range reduction and polynomial.
float repro_log(float x) {
    uint bits = floatBitsToUint(x);
    int e = int((bits >> 23) & 0xFFu) - 126;
    precise float m = uintBitsToFloat((bits & 0x007FFFFFu) | 0x3F000000u);  // [0.5, 1)
    if (m < 0.70710678118654752) {
        e -= 1;
        m = m + m - 1.0;
    } else {
        m = m - 1.0;
    }
    precise float z = m * m;
    precise float y = 7.0376836292E-2;
    y = y * m - 1.1514610310E-1;
    y = y * m + 1.1676998740E-1;
    y = y * m - 1.2420140846E-1;
    y = y * m + 1.4249322787E-1;
    y = y * m - 1.6668057665E-1;
    y = y * m + 2.0000714765E-1;
    y = y * m - 2.4999993993E-1;
    y = y * m + 3.3333331174E-1;
    y = y * m * z;
    precise float fe = float(e);
    y = y + -2.12194440E-4 * fe;
    y = y + -0.5 * z;
    precise float r = m + y;
    r = r + 0.693359375 * fe;
    return r;
}

// sqrt(v) for v >= 0 through three Newton steps on the reciprocal square root.
float repro_sqrt(float v) {
    if (v == 0.0) return 0.0;
    precise float y = uintBitsToFloat(0x5F3759DFu - (floatBitsToUint(v) >> 1));
    precise float hv = 0.5 * v;
    y = y * (1.5 - hv * y * y);
    y = y * (1.5 - hv * y * y);
    y = y * (1.5 - hv * y * y);
    precise float s = v * y;
    return s;
}

// (sin, cos) of 2*pi*t for t in [0, 1): exact quadrant split, Taylor series on [0, pi/2).
vec2 repro_sincos_2pi(float t) {
    precise float t4 = t * 4.0;
    uint q = uint(t4);
    precise float r = t4 - float(q);
    precise float a = r * 1.5707963267948966;
    precise float a2 = a * a;
    precise float s = -2.5052108385441720e-8;
    s = s * a2 + 2.7557319223985893e-6;
    s = s * a2 - 1.9841269841269841e-4;
    s = s * a2 + 8.3333333333333333e-3;
    s = s * a2 - 1.6666666666666667e-1;
    s = s * a2 + 1.0;
    s = s * a;
    precise float c = 2.0876756987868099e-9;
    c = c * a2 - 2.7557319223985893e-7;
    c = c * a2 + 2.4801587301587302e-5;
    c = c * a2 - 1.3888888888888889e-3;
    c = c * a2 + 4.1666666666666667e-2;
    c = c * a2 - 0.5;
    c = c * a2 + 1.0;
    if (q == 0u) return vec2(s, c);
    if (q == 1u) return vec2(c, -s);
    if (q == 2u) return vec2(-s, -c);
    return vec2(-c, s);
}
#endif
