// Fused MTC rollout: the whole forward over T steps and its reverse-time (BPTT) backward in one call.
//
// This is a compiled transcription of mtc_analog/neuron/step.py::mtc_step (which derives its update
// from mtc_analog/neuron/equations.py, the source of truth); tests/test_fused.py checks it against
// that reference, forward and gradients. Layout: time-major, contiguous (T, M, N) for inputs and
// traces, (M, N) for states, (P, N) for the per-neuron parameter rows below. Every column (m, n) is an
// independent recurrence, so blocks of columns are spread over threads with at::parallel_for and the
// inner loop over neighbouring neurons is written for the compiler to vectorise.
//
// Registered as torch custom ops (torch.ops.mtc_analog.rollout_forward / rollout_backward) rather
// than a pybind module: the light headers below compile in a quarter of the time of
// <torch/extension.h>.
#ifndef MTC_STANDALONE
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/from_blob.h>
#include <torch/library.h>
#else
// MTC_STANDALONE: the kernels alone, without torch, for benchmarks/kernel_micro.cpp (instruction
// counts under callgrind, profiles, and a build in seconds instead of minutes). Serial loop.
#include <cstdint>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
namespace at {
template <typename F>
void parallel_for(int64_t begin, int64_t end, int64_t, const F& f) { if (begin < end) f(begin, end); }
}  // namespace at
#endif

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <list>
#include <mutex>
#include <type_traits>
#include <cmath>
#include <optional>
#include <vector>

#ifdef MTC_USE_LIBMVEC
// glibc's libmvec has SIMD variants of these, but <math.h> only declares them under -ffast-math,
// which we avoid (it would change NaN handling and the reference's rounding). Declaring them here
// lets the loop vectoriser call the vector versions (linked with -lmvec).
extern "C" {
#define MTC_SIMD __attribute__((simd("notinbranch")))
MTC_SIMD double tanh(double) noexcept;
MTC_SIMD float tanhf(float) noexcept;
MTC_SIMD double exp(double) noexcept;
MTC_SIMD float expf(float) noexcept;
MTC_SIMD double sinh(double) noexcept;
MTC_SIMD float sinhf(float) noexcept;
MTC_SIMD double cosh(double) noexcept;
MTC_SIMD float coshf(float) noexcept;
MTC_SIMD double asinh(double) noexcept;
MTC_SIMD float asinhf(float) noexcept;
#undef MTC_SIMD
}
#endif

namespace {

// Rows of the stacked parameter tensor (order fixed by mtc_analog/neuron/fused.py::PARAM_ORDER).
enum Row : int64_t {
  A_F = 0, A_SP, A_SM, A_US, D_F, D_SP, D_SM, D_US, TAU_M, TAU_F, TAU_S, TAU_US, RES, U_REST, N_ROWS
};

// Integration methods, in the order of mtc_analog/neuron/step.py::METHODS. The Python side passes
// filter_kind = method * 2 + (filter == "ota").
enum Method : int { EULER = 0, EXACT = 1, HEUN = 2, RK4 = 3 };


#define MTC_INLINE inline __attribute__((always_inline))

struct Options {
  double dt;
  double u_th, span, u_c;  // transduction constants [V_s]
};

// The state of one neuron column, and one neuron's parameters (values, so that the per-column
// functions below inline into the vectorised loops without address-taken locals).
template <typename T>
struct S4 {
  T m, f, s, u;
};

template <typename T>
struct Par {
  T af, asp, asm_, aus, df, dsp, dsm, dus, taum, tauf, taus, tauu, res, urest;
  T itaum, itauf, itaus, itauu;  // 1/tau (float only: see over())
};

// Gradient accumulators of the parameters (the 14 rows, in Row order).
template <typename T>
struct PGrad {
  T af, asp, asm_, aus, df, dsp, dsm, dus, taum, tauf, taus, tauu, res, urest;
};

// a / tau. float: a * (1/tau), the reciprocal precomputed per neuron (a division costs as much as a
// dozen multiplications; the float kernel is checked against the float64 reference with a
// tolerance anyway). double: the division itself, as the reference, so that float64 results agree
// with it to rounding (1e-12 in the tests).
template <typename T>
MTC_INLINE T over(T a, T tau, T inv) {
  if constexpr (std::is_same_v<T, float>) return a * inv;
  else return a / tau;
}

// tanh. double: libm/libmvec's. float: a rational minimax approximation (the one Eigen uses for
// float: odd degree-13 over even degree-6 polynomial, inputs clamped to +-7.9053; max error 3.4e-7,
// about 6 ulp, measured on 2M points in [-12, 12]). glibc's AVX2 tanhf costs ~1.4 ns per element on
// the development machine, this ~0.3 ns; it is plain arithmetic, so it is also the same on every CPU.
template <typename T>
MTC_INLINE T tanh_(T a) {
  if constexpr (std::is_same_v<T, float>) {
    const float c = 7.90531110763549805f;
    const float lo = a < -c ? -c : a;
    const float x = lo > c ? c : lo;
    const float x2 = x * x;
    // explicit fused multiply-adds (x86-64-v3 has FMA; an fma is correctly rounded, so the same on
    // every CPU): 9 instructions fewer per tanh than separate multiplies and adds
    float p = std::fma(x2, -2.76076847742355e-16f, 2.00018790482477e-13f);
    p = std::fma(x2, p, -8.60467152213735e-11f);
    p = std::fma(x2, p, 5.12229709037114e-08f);
    p = std::fma(x2, p, 1.48572235717979e-05f);
    p = std::fma(x2, p, 6.37261928875436e-04f);
    p = std::fma(x2, p, 4.89352455891786e-03f);
    p = x * p;
    float q = std::fma(x2, 1.19825839466702e-06f, 1.18534705686654e-04f);
    q = std::fma(x2, q, 2.26843463243900e-03f);
    q = std::fma(x2, q, 4.89352518554385e-03f);
    const float r = p / q;  // unconditional: a division inside the select would keep a branch
    return std::fabs(a) < 0.0004f ? a : r;
  } else {
    return std::tanh(a);
  }
}

// Everything below is passed and returned by value, with no capturing lambdas or reference
// out-parameters, so that it inlines into the row loops and they vectorise (checked with
// -fopt-info-vec: every row loop, float and double, calls libmvec's 8/4-wide variants). The loops use
// `#pragma GCC ivdep`, not `omp simd`: the latter privatises by-value structs into per-lane arrays
// before inlining, which defeats the float loops.
template <typename T>
MTC_INLINE S4<T> axpy(S4<T> x, T a, S4<T> k) {
  return {x.m + a * k.m, x.f + a * k.f, x.s + a * k.s, x.u + a * k.u};
}

template <typename T>
MTC_INLINE S4<T> scale(S4<T> v, T a) {
  return {a * v.m, a * v.f, a * v.s, a * v.u};
}

template <typename T>
MTC_INLINE S4<T> add(S4<T> a, S4<T> b) {
  return {a.m + b.m, a.f + b.f, a.s + b.s, a.u + b.u};
}

// Vector-Jacobian product of the RHS: w^T df/dX (gx), w^T df/dparams (gp), w^T df/dI_in (gin).
template <typename T>
struct VJP {
  S4<T> gx;
  PGrad<T> gp;
  T gin;
};

template <typename T>
MTC_INLINE PGrad<T> add(PGrad<T> a, PGrad<T> b) {
  return {a.af + b.af,   a.asp + b.asp,   a.asm_ + b.asm_, a.aus + b.aus,   a.df + b.df,
          a.dsp + b.dsp, a.dsm + b.dsm,   a.dus + b.dus,   a.taum + b.taum, a.tauf + b.tauf,
          a.taus + b.taus, a.tauu + b.tauu, a.res + b.res, a.urest + b.urest};
}

template <typename T>
MTC_INLINE VJP<T> add(VJP<T> a, VJP<T> b) {
  return {add(a.gx, b.gx), add(a.gp, b.gp), a.gin + b.gin};
}

template <typename T, bool OTA>
MTC_INLINE T filter_g(T v) {
  if constexpr (OTA) return tanh_(v);
  else return v;
}

// The four elements' tanh at state x (the fast one reads U_m when INST): the expensive part of the
// RHS and of its VJP. The backward's recomputation stores them per step, so that the adjoint of the
// step-start stage does not evaluate them again.
template <typename T>
struct Th4 {
  T f, sp, sm, us;
};

template <typename T, bool INST>
MTC_INLINE Th4<T> elements(S4<T> x, Par<T> p) {
  const T fr = INST ? x.m : x.f;
  return {tanh_(fr - p.df), tanh_(x.s - p.dsp), tanh_(x.s - p.dsm), tanh_(x.u - p.dus)};
}

// The right-hand side dX/dt (equations.py::rhs), given the elements' tanh th at x. INST: tau_f = 0,
// the fast element reads U_m and dU_f/dt is dU_m/dt. OTA: the filters are tanh follower-integrators.
template <typename T, bool OTA, bool INST>
MTC_INLINE S4<T> rhs_th(S4<T> x, Par<T> p, T in, Th4<T> th) {
  const T itot = -p.af * th.f + p.asp * th.sp + -p.asm_ * th.sm + p.aus * th.us;
  const T dm = over(-(x.m - p.urest) + p.res * (in - itot), p.taum, p.itaum);
  const T df = INST ? dm : over(filter_g<T, OTA>(x.m - x.f), p.tauf, p.itauf);
  return {dm, df, over(filter_g<T, OTA>(x.m - x.s), p.taus, p.itaus), over(filter_g<T, OTA>(x.m - x.u), p.tauu, p.itauu)};
}

template <typename T, bool OTA, bool INST>
MTC_INLINE S4<T> rhs(S4<T> x, Par<T> p, T in) {
  return rhs_th<T, OTA, INST>(x, p, in, elements<T, INST>(x, p));
}

// With A = w_m/tau_m (w_m + w_f when INST: dU_f/dt is dU_m/dt) and q_k = A R a_k (1 - tanh_k^2):
// dI: A R; da_f: A R tanh_f, da_{s+}: -A R tanh_{s+}, da_{s-}: A R tanh_{s-}, da_us: -A R tanh_us;
// dd_f: -q_f, dd_{s+}: q_{s+}, dd_{s-}: -q_{s-}, dd_us: q_us; dtau_m: -w_m rate_m/tau_m;
// dR: A (I_in - I_tot); dU_rest: A; state: m: -A (+ q_f if INST), f: q_f, s: -q_{s+} + q_{s-},
// us: -q_us. Each filter rate g(U_m - U_x)/tau_x adds w_x g'/tau_x to m, -w_x g'/tau_x to x, and
// -w_x g/tau_x^2 to tau_x.
template <typename T, bool OTA, bool INST>
MTC_INLINE VJP<T> rhs_vjp_th(S4<T> x, Par<T> p, T in, S4<T> w, Th4<T> th) {
  const T th_f = th.f, th_sp = th.sp, th_sm = th.sm, th_us = th.us;
  const T itot = -p.af * th_f + p.asp * th_sp + -p.asm_ * th_sm + p.aus * th_us;
  const T drive = in - itot;
  const T dm = over(-(x.m - p.urest) + p.res * drive, p.taum, p.itaum);
  const T wm = INST ? w.m + w.f : w.m;
  const T A = over(wm, p.taum, p.itaum), AR = A * p.res;
  const T q_f = AR * p.af * (T(1) - th_f * th_f);
  const T q_sp = AR * p.asp * (T(1) - th_sp * th_sp);
  const T q_sm = AR * p.asm_ * (T(1) - th_sm * th_sm);
  const T q_us = AR * p.aus * (T(1) - th_us * th_us);
  // filters: h = g(U_m - U_x), dh = g'
  T hf = T(0), dhf = T(0);
  if constexpr (!INST) {
    hf = filter_g<T, OTA>(x.m - x.f);
    dhf = OTA ? T(1) - hf * hf : T(1);
  }
  const T hs = filter_g<T, OTA>(x.m - x.s), dhs = OTA ? T(1) - hs * hs : T(1);
  const T hu = filter_g<T, OTA>(x.m - x.u), dhu = OTA ? T(1) - hu * hu : T(1);
  const T cf = INST ? T(0) : over(w.f * dhf, p.tauf, p.itauf), cs = over(w.s * dhs, p.taus, p.itaus);
  const T cu = over(w.u * dhu, p.tauu, p.itauu);
  VJP<T> r;
  r.gx = {-A + (INST ? q_f : T(0)) + cf + cs + cu, INST ? T(0) : q_f - cf, -q_sp + q_sm - cs, -q_us - cu};
  r.gp = {AR * th_f, -AR * th_sp, AR * th_sm, -AR * th_us, -q_f, q_sp, -q_sm, q_us,
          -over(wm * dm, p.taum, p.itaum), INST ? T(0) : -over(over(w.f * hf, p.tauf, p.itauf), p.tauf, p.itauf),
          -over(over(w.s * hs, p.taus, p.itaus), p.taus, p.itaus), -over(over(w.u * hu, p.tauu, p.itauu), p.tauu, p.itauu),
          A * drive, A};
  r.gin = AR;
  return r;
}

template <typename T, bool OTA, bool INST>
MTC_INLINE VJP<T> rhs_vjp(S4<T> x, Par<T> p, T in, S4<T> w) {
  return rhs_vjp_th<T, OTA, INST>(x, p, in, w, elements<T, INST>(x, p));
}

// Exact filter update with U_m held (c = exp(-dt/tau)) and its partials d x'/d ux (d x'/d um is
// 1 - that) and d x'/d tau.
template <typename T, bool OTA>
MTC_INLINE T exact_filter(T um, T ux, T c) {
  if constexpr (OTA) return um + std::asinh(std::sinh(ux - um) * c);
  else return um + (ux - um) * c;
}

template <typename T>
struct FilterPartials {
  T kx, ktau;
};

template <typename T, bool OTA>
MTC_INLINE FilterPartials<T> exact_partials(T um, T ux, T c, T tau, T dt) {
  if constexpr (!OTA) {
    return {c, (ux - um) * c * dt / (tau * tau)};
  } else {
    const T d = ux - um;
    const T w = std::sinh(d) * c;
    const T inv = T(1) / std::sqrt(T(1) + w * w);
    return {std::cosh(d) * c * inv, w * dt / (tau * tau) * inv};
  }
}

// Per-neuron constants of the exact filters: exp(-dt/tau) (unused by the other methods).
template <typename T>
struct Consts {
  T cf, cs, cu;
};

// One step of `dt` (step.py::mtc_step), th1 the elements' tanh at x. U_f is U_m after the step when INST.
template <typename T, int METHOD, bool OTA, bool INST>
MTC_INLINE S4<T> step_th(S4<T> x, Par<T> p, T in, T dt, Consts<T> c, Th4<T> th1) {
  S4<T> y;
  if constexpr (METHOD == EULER) {
    y = axpy(x, dt, rhs_th<T, OTA, INST>(x, p, in, th1));
  } else if constexpr (METHOD == EXACT) {
    const S4<T> k = rhs_th<T, OTA, INST>(x, p, in, th1);
    y = {x.m + dt * k.m, INST ? x.f : exact_filter<T, OTA>(x.m, x.f, c.cf),
         exact_filter<T, OTA>(x.m, x.s, c.cs), exact_filter<T, OTA>(x.m, x.u, c.cu)};
  } else if constexpr (METHOD == HEUN) {
    const S4<T> k1 = rhs_th<T, OTA, INST>(x, p, in, th1);
    const S4<T> k2 = rhs<T, OTA, INST>(axpy(x, dt, k1), p, in);
    y = axpy(x, T(0.5) * dt, add(k1, k2));
  } else {
    const T h = T(0.5) * dt;
    const S4<T> k1 = rhs_th<T, OTA, INST>(x, p, in, th1);
    const S4<T> k2 = rhs<T, OTA, INST>(axpy(x, h, k1), p, in);
    const S4<T> k3 = rhs<T, OTA, INST>(axpy(x, h, k2), p, in);
    const S4<T> k4 = rhs<T, OTA, INST>(axpy(x, dt, k3), p, in);
    // k1 + 2 k2 + 2 k3 + k4
    y = axpy(x, dt / T(6), add(add(k1, scale(add(k2, k3), T(2))), k4));
  }
  if constexpr (INST) y.f = y.m;
  return y;
}

template <typename T, int METHOD, bool OTA, bool INST>
MTC_INLINE S4<T> step(S4<T> x, Par<T> p, T in, T dt, Consts<T> c) {
  return step_th<T, METHOD, OTA, INST>(x, p, in, dt, c, elements<T, INST>(x, p));
}

// Adjoint of one step (th1: the elements' tanh at x, from the recomputation): given gb = dL/dX' (after the step), returns dL/dX (before it) in gx, and the
// step's parameter and input gradients. The stages are recomputed from the step-start state x, then
// each stage's RHS is pulled back with rhs_vjp (reverse order of the stages).
template <typename T, int METHOD, bool OTA, bool INST>
MTC_INLINE VJP<T> step_vjp(S4<T> x, Par<T> p, T in, T dt, Consts<T> c, S4<T> gb, Th4<T> th1) {
  if constexpr (INST) {  // U_f' is U_m': its adjoint belongs to U_m'
    gb.m += gb.f;
    gb.f = T(0);
  }
  if constexpr (METHOD == EULER) {
    VJP<T> r = rhs_vjp_th<T, OTA, INST>(x, p, in, scale(gb, dt), th1);
    r.gx = add(r.gx, gb);
    return r;
  } else if constexpr (METHOD == EXACT) {
    VJP<T> r = rhs_vjp_th<T, OTA, INST>(x, p, in, S4<T>{dt * gb.m, T(0), T(0), T(0)}, th1);
    r.gx.m += gb.m;
    if constexpr (!INST) {
      const FilterPartials<T> kf = exact_partials<T, OTA>(x.m, x.f, c.cf, p.tauf, dt);
      r.gx.m += gb.f * (T(1) - kf.kx);
      r.gx.f += gb.f * kf.kx;
      r.gp.tauf += gb.f * kf.ktau;
    }
    const FilterPartials<T> ks = exact_partials<T, OTA>(x.m, x.s, c.cs, p.taus, dt);
    const FilterPartials<T> ku = exact_partials<T, OTA>(x.m, x.u, c.cu, p.tauu, dt);
    r.gx.m += gb.s * (T(1) - ks.kx) + gb.u * (T(1) - ku.kx);
    r.gx.s += gb.s * ks.kx;
    r.gx.u += gb.u * ku.kx;
    r.gp.taus += gb.s * ks.ktau;
    r.gp.tauu += gb.u * ku.ktau;
    return r;
  } else if constexpr (METHOD == HEUN) {
    const T h = T(0.5) * dt;
    const S4<T> y2 = axpy(x, dt, rhs_th<T, OTA, INST>(x, p, in, th1));
    const VJP<T> v2 = rhs_vjp<T, OTA, INST>(y2, p, in, scale(gb, h));             // v2.gx: adjoint of Y2
    const VJP<T> v1 = rhs_vjp_th<T, OTA, INST>(x, p, in, axpy(scale(gb, h), dt, v2.gx), th1);  // w1: adjoint of k1
    VJP<T> r = add(v1, v2);
    r.gx = add(r.gx, gb);
    return r;
  } else {
    const T h = T(0.5) * dt, sixth = dt / T(6), third = dt / T(3);
    const S4<T> y2 = axpy(x, h, rhs_th<T, OTA, INST>(x, p, in, th1));
    const S4<T> y3 = axpy(x, h, rhs<T, OTA, INST>(y2, p, in));
    const S4<T> y4 = axpy(x, dt, rhs<T, OTA, INST>(y3, p, in));
    const VJP<T> v4 = rhs_vjp<T, OTA, INST>(y4, p, in, scale(gb, sixth));
    const VJP<T> v3 = rhs_vjp<T, OTA, INST>(y3, p, in, axpy(scale(gb, third), dt, v4.gx));
    const VJP<T> v2 = rhs_vjp<T, OTA, INST>(y2, p, in, axpy(scale(gb, third), h, v3.gx));
    const VJP<T> v1 = rhs_vjp_th<T, OTA, INST>(x, p, in, axpy(scale(gb, sixth), h, v2.gx), th1);
    VJP<T> r = add(add(v1, v2), add(v3, v4));
    r.gx = add(r.gx, gb);
    return r;
  }
}

template <typename T, bool CLIP>
MTC_INLINE T transduce(T um, T u_th, T span, T u_c) {
  if constexpr (CLIP) {
    const T z = over(um - u_th, span, T(1) / span);
    return z < T(0) ? T(0) : (z > T(1) ? T(1) : z);  // NaN passes through, as torch.clamp
  } else {
    return T(1) / (T(1) + std::exp(T(-2) * (um - u_c)));
  }
}

template <typename T, bool CLIP>
MTC_INLINE T transduce_grad(T um, T u_th, T span, T u_c) {
  if constexpr (CLIP) {
    const T z = over(um - u_th, span, T(1) / span);
    // torch.clamp's inclusive mask; `&` (not `&&`) keeps the loop free of branches
    return over(T((z >= T(0)) & (z <= T(1))), span, T(1) / span);
  } else {
    const T s = T(1) / (T(1) + std::exp(T(-2) * (um - u_c)));
    return T(2) * s * (T(1) - s);
  }
}

struct Shape {
  int64_t steps, batch, n;
};

// 1/tau_m, 1/tau_f (1 when tau_f = 0: unused), 1/tau_s, 1/tau_us per neuron (read by the float kernel).
template <typename T>
std::vector<T> inverse_taus(const T* p, int64_t N) {
  std::vector<T> inv(4 * N);
  for (int64_t n = 0; n < N; ++n) {
    const T tf = p[TAU_F * N + n];
    inv[n] = T(1) / p[TAU_M * N + n];
    inv[N + n] = tf > T(0) ? T(1) / tf : T(1);
    inv[2 * N + n] = T(1) / p[TAU_S * N + n];
    inv[3 * N + n] = T(1) / p[TAU_US * N + n];
  }
  return inv;
}

// exp(-dt/tau) per neuron and filter (only the exact method reads them; INST: no fast filter).
template <typename T, int METHOD, bool INST>
std::vector<T> exact_constants(const T* p, int64_t N, T dt) {
  std::vector<T> c(METHOD == EXACT ? 3 * N : 0);
  if constexpr (METHOD == EXACT) {
    for (int64_t n = 0; n < N; ++n) {
      c[n] = INST ? T(1) : std::exp(-dt / p[TAU_F * N + n]);
      c[N + n] = std::exp(-dt / p[TAU_S * N + n]);
      c[2 * N + n] = std::exp(-dt / p[TAU_US * N + n]);
    }
  }
  return c;
}

// ---------------------------------------------------------------------------------------------------
// Blocking. Columns (m, n) are independent recurrences, at flat index m N + n of every (T, M, N) slice.
// A block is `rows` consecutive batch rows x `len` consecutive neurons (~4 KiB of columns per state
// variable): either whole rows (len = N) or part of one row (rows = 1), so always one contiguous
// range of flat columns, which its chunks tile regardless of row boundaries; each block runs the whole time
// loop, segment by segment (kSeg steps), and within a segment chunk by chunk (see kChunk below): a
// segment touches kSeg contiguous slices of each (T, M, N) array, whose pages stay in the TLB for all
// the block's chunks. Blocks go to threads whole, and the blocking depends on the shape only, so the
// numbers do not depend on the thread count.
// Backward: the forward stores the state only every kSeg steps (checkpoints); the backward recomputes
// each segment's kSeg states of a chunk into a small L1-resident buffer and runs the adjoint over
// it. That trades one extra forward for not writing and re-reading 4 full state traces.
// ---------------------------------------------------------------------------------------------------
constexpr int64_t kSeg = 16;

struct Blocking {
  int64_t len, rows, nbn, nbm;
  int64_t cols() const { return len * rows; }
  int64_t count() const { return nbn * nbm; }
};

template <typename T>
Blocking blocking(int64_t M, int64_t N) {
  const int64_t target = 4096 / int64_t(sizeof(T));  // columns per block
  Blocking b;
  b.len = std::min(N, target);
  b.rows = std::max<int64_t>(1, std::min(M, target / b.len));
  b.nbn = (N + b.len - 1) / b.len;
  b.nbm = (M + b.rows - 1) / b.rows;
  return b;
}

// One block: the flat columns [col0, col0 + count) (batch rows [m0, m0 + nr) x neurons [n0, n0 + nl),
// contiguous because nl < N only when nr = 1).
struct Block {
  int64_t col0, count;
};

inline Block block_at(const Blocking& bk, int64_t M, int64_t N, int64_t id) {
  const int64_t bm = id / bk.nbn, bn = id % bk.nbn;
  const int64_t m0 = bm * bk.rows, n0 = bn * bk.len;
  return {m0 * N + n0, std::min(bk.rows, M - m0) * std::min(bk.len, N - n0)};
}

#ifndef MTC_STANDALONE
// Large buffers (the outputs s and the membrane trace, the checkpoints, dL/dI) are recycled. A fresh
// tensor of 80 MB costs ~1 ns per element in page faults before the kernel writes a byte (zeroing
// the pages; measured at T 300 x B 64 x N 1024); a buffer freed by an earlier call (the last
// iteration's outputs) is already mapped. Freed buffers wait in this cache, most recent first, up to
// `limit` bytes in all (set_buffer_cache; 0 turns it off), and are handed out again to a request of at
// least 2/3 of their size. New ones are 2 MiB-aligned transparent huge pages (512x fewer faults and TLB
// entries; a no-op where THP is off).
class BufferCache {
 public:
  static BufferCache& instance() {
    static BufferCache* cache = new BufferCache();  // never destroyed: tensors may be freed after exit starts
    return *cache;
  }

  at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
    int64_t numel = 1;
    for (int64_t d : sizes) numel *= d;
    const size_t bytes = size_t(numel) * options.dtype().itemsize();
    if (bytes < kMinBytes) return at::empty(sizes, options);
    size_t capacity = 0;
    void* data = take(bytes, capacity);
    if (!data) return at::empty(sizes, options);
    return at::from_blob(data, sizes, [capacity](void* p) { BufferCache::instance().give(p, capacity); }, options);
  }

  void set_limit(size_t bytes) {
    std::lock_guard<std::mutex> guard(mutex_);
    limit_ = bytes;
    trim();
  }

  size_t cached_bytes() {
    std::lock_guard<std::mutex> guard(mutex_);
    return cached_;
  }

 private:
  static constexpr size_t kMinBytes = size_t(4) << 20, kHuge = size_t(2) << 20;
  struct Entry {
    void* data;
    size_t capacity;
  };

  void* take(size_t bytes, size_t& capacity) {
    {
      std::lock_guard<std::mutex> guard(mutex_);
      auto best = free_.end();
      for (auto it = free_.begin(); it != free_.end(); ++it)
        if (it->capacity >= bytes && 3 * bytes >= 2 * it->capacity && (best == free_.end() || it->capacity < best->capacity))
          best = it;
      if (best != free_.end()) {
        void* data = best->data;
        capacity = best->capacity;
        cached_ -= capacity;
        free_.erase(best);
        return data;
      }
    }
    capacity = (bytes + kHuge - 1) / kHuge * kHuge;
    void* data = std::aligned_alloc(kHuge, capacity);
    if (data) madvise(data, capacity, MADV_HUGEPAGE);
    return data;
  }

  void give(void* data, size_t capacity) {
    std::lock_guard<std::mutex> guard(mutex_);
    free_.push_front({data, capacity});
    cached_ += capacity;
    trim();
  }

  void trim() {  // caller holds mutex_; drops the least recently freed first
    while (cached_ > limit_ && !free_.empty()) {
      cached_ -= free_.back().capacity;
      std::free(free_.back().data);
      free_.pop_back();
    }
  }

  std::mutex mutex_;
  std::list<Entry> free_;
  size_t cached_ = 0, limit_ = size_t(1) << 30;
};

at::Tensor cached_empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
  return BufferCache::instance().empty(sizes, options);
}
#endif

// Chunks: kChunk consecutive flat columns of a block (256 bytes of values, 512 with AVX-512); a chunk
// may span batch rows, so a small or odd N still fills whole vectors (N = 37: 2.5x faster than
// chunks that stop at the end of a row). Within a block,
// time advances segment by segment (kSeg steps); each chunk runs a whole segment at once, so its
// working set stays in L1 while the pages of the (T, M, N) arrays a segment touches (kSeg rows each)
// stay in the TLB for all the block's chunks. Backward: per segment, a chunk recomputes its kSeg
// states from the checkpoint and runs the adjoint over them at once -- segment states, the 4 state
// adjoints, the 14 parameter-gradient accumulators, the per-neuron constants: ~30 KiB for float
// (a whole block's, ~340 KiB, did not fit in L1: it lived in L2 and was evicted by every context
// switch on a shared machine). The width is a compile-time constant, so each of these arrays is one base
// register plus constant offsets in the vectorised loops (with a run-time stride, the ~40 pointers
// of the adjoint did not fit in registers and were reloaded from the stack every iteration).
#ifndef MTC_CHUNK_BYTES
#ifdef __AVX512F__
#define MTC_CHUNK_BYTES 512  // 8 zmm registers per row of a chunk: the backward measured ~15 % faster than with 4
#else
#define MTC_CHUNK_BYTES 256
#endif
#endif
template <typename T>
constexpr int64_t kChunk = MTC_CHUNK_BYTES / int64_t(sizeof(T));

// Non-temporal stores of whole chunk rows (stream_row, below): one vector at a time.
#if defined(__AVX512F__)
constexpr int64_t kStreamAlign = 64;
MTC_INLINE void stream_vector(float* d, const float* s) { _mm512_stream_ps(d, _mm512_loadu_ps(s)); }
MTC_INLINE void stream_vector(double* d, const double* s) { _mm512_stream_pd(d, _mm512_loadu_pd(s)); }
#elif defined(__AVX__)
constexpr int64_t kStreamAlign = 32;
MTC_INLINE void stream_vector(float* d, const float* s) { _mm256_stream_ps(d, _mm256_loadu_ps(s)); }
MTC_INLINE void stream_vector(double* d, const double* s) { _mm256_stream_pd(d, _mm256_loadu_pd(s)); }
#endif
// Orders this thread's non-temporal stores before whatever reads the buffer next (another thread, or autograd).
MTC_INLINE void stream_fence() {
#if defined(__AVX512F__) || defined(__AVX__)
  _mm_sfence();
#endif
}
// Whether a T x M x N output (s forward, dL/dI backward) is written with non-temporal stores: from 4 MiB
// on, it outgrows the core's L2 before anything reads it back. Measured (benchmarks/README.md, 2026-12-07,
// Xeon): Euler fwd+bwd -12 to -21 % at T 300-3000 x N 256-1024, within the noise at N 64.
// $MTC_ANALOG_STREAM_MB moves the threshold (experiments: 0 streams every output, a huge value none); the
// values written are the same either way.
inline bool streams_output(int64_t steps, int64_t elements_per_step, size_t bytes_per_value) {
  static const double threshold = [] {
    const char* v = std::getenv("MTC_ANALOG_STREAM_MB");
    return std::max(0.0, v && *v ? std::atof(v) : 4.0) * 1048576.0;
  }();
  return double(steps) * double(elements_per_step) * double(bytes_per_value) >= threshold;
}

// Rows of a chunk's gathered per-neuron constants: the N_ROWS parameters, then 1/tau (m, f, s, us),
// then exp(-dt/tau) (f, s, us; exact method only).
enum ChunkRow : int64_t { C_INV = N_ROWS, C_EXP = N_ROWS + 4, C_ROWS = N_ROWS + 7 };

template <typename T>
MTC_INLINE Par<T> chunk_par(const T* q, int64_t j) {
  constexpr int64_t W = kChunk<T>;
  return {q[A_F * W + j],    q[A_SP * W + j],   q[A_SM * W + j],       q[A_US * W + j],       q[D_F * W + j],
          q[D_SP * W + j],   q[D_SM * W + j],   q[D_US * W + j],       q[TAU_M * W + j],      q[TAU_F * W + j],
          q[TAU_S * W + j],  q[TAU_US * W + j], q[RES * W + j],        q[U_REST * W + j],     q[C_INV * W + j],
          q[(C_INV + 1) * W + j], q[(C_INV + 2) * W + j], q[(C_INV + 3) * W + j]};
}

template <typename T, int METHOD>
MTC_INLINE Consts<T> chunk_consts(const T* q, int64_t j) {
  constexpr int64_t W = kChunk<T>;
  if constexpr (METHOD == EXACT) return {q[C_EXP * W + j], q[(C_EXP + 1) * W + j], q[(C_EXP + 2) * W + j]};
  else return {T(0), T(0), T(0)};
}

// Gather the parameter rows, inverses and exact constants of flat columns [col, col + w) (neuron
// col mod N onwards, wrapping at N) into a chunk's rows.
template <typename T>
void gather_chunk(const T* p, const T* ip, const T* cp, int64_t N, int64_t col, int64_t w, T* q) {
  constexpr int64_t W = kChunk<T>;
  std::fill(q, q + C_ROWS * W, T(1));  // lanes past w: harmless values (never read back)
  auto rows = [&](const T* src, int64_t count, int64_t first) {
    for (int64_t row = 0; row < count; ++row) {
      T* dst = q + (first + row) * W;
      for (int64_t j = 0, n = col % N; j < w; n = 0) {  // contiguous runs up to the end of a batch row
        const int64_t len = std::min(w - j, N - n);
        std::copy(src + row * N + n, src + row * N + n + len, dst + j);
        j += len;
      }
    }
  };
  rows(p, N_ROWS, 0);
  rows(ip, 4, C_INV);
  if (cp) rows(cp, 3, C_EXP);
}

// Per-thread scratch, reused across calls (slot k of this thread, at least n values, contents left from
// earlier use: every caller writes what it reads). Fresh vectors per call cost ~100 us of allocation,
// zeroing and page faults: a fifth of the training step of a small layer (64 neurons, 300 steps).
template <typename T>
T* scratch(int slot, size_t n) {
  thread_local std::vector<T> buffers[8];
  std::vector<T>& b = buffers[slot];
  if (b.size() < n) b.resize(n);
  return b.data();
}

// ---------------------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------------------
// Copy one chunk row to memory the caller will not read back soon with non-temporal stores where the
// row is a whole aligned chunk: a large output written through the cache costs a read of every line first
// (read-for-ownership), traffic a layer whose buffers exceed the caches pays in full. Same values.
template <typename T>
MTC_INLINE void stream_row(T* __restrict dst, const T* __restrict src, int64_t w) {
  constexpr int64_t W = kChunk<T>;
#if defined(__AVX512F__) || defined(__AVX__)
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    if (w == W && (reinterpret_cast<std::uintptr_t>(dst) % kStreamAlign) == 0) {
      for (int64_t j = 0; j < W; j += kStreamAlign / int64_t(sizeof(T))) stream_vector(dst + j, src + j);
      return;
    }
  }
#endif
  std::copy(src, src + w, dst);
}

// Advance one chunk by `steps` steps from its state x (4 x W, in place), writing s and the membrane
// trace at each step (in, so: row stride MN; ut: row stride ut_stride, 0 for a scratch row); with `row`
// (W values, or null) s goes through that row and stream_row.
template <typename T, int METHOD, bool OTA, bool CLIP, bool INST>
MTC_INLINE void forward_chunk(int64_t w, int64_t steps, T* __restrict x, const T* __restrict in, int64_t MN,
                              const T* __restrict q, T dt, T u_th, T span, T u_c, T* __restrict so,
                              T* __restrict ut, int64_t ut_stride, T* __restrict row) {
  constexpr int64_t W = kChunk<T>;
  for (int64_t i = 0; i < steps; ++i) {
    const T* __restrict ini = in + i * MN;
    T* __restrict soi = row ? row : so + i * MN;
    T* __restrict uti = ut + i * ut_stride;
#pragma GCC ivdep
    for (int64_t j = 0; j < w; ++j) {
      const S4<T> y = step<T, METHOD, OTA, INST>(S4<T>{x[j], x[W + j], x[2 * W + j], x[3 * W + j]}, chunk_par(q, j),
                                                  ini[j], dt, chunk_consts<T, METHOD>(q, j));
      x[j] = y.m; x[W + j] = y.f; x[2 * W + j] = y.s; x[3 * W + j] = y.u;
      soi[j] = transduce<T, CLIP>(y.m, u_th, span, u_c);  // unconditional (scratch when unused): a branch
      uti[j] = y.m;                                        // here would stop the vectorisation
    }
    if (row) stream_row(so + i * MN, row, w);
  }
}

template <typename T, int METHOD, bool OTA, bool CLIP, bool INST>
void forward_kernel(const Shape& sh, const Options& o, const T* i_in, const T* m0, const T* f0,
                    const T* s0, const T* us0, const T* p, T* s_out, T* u_trace,
                    T* ckpt /* (ceil(T/kSeg), 4, M, N) or null */, T* mT, T* fT, T* sT, T* usT) {
  constexpr int64_t W = kChunk<T>;
  const int64_t N = sh.n, M = sh.batch, MN = M * N;
  const Blocking bk = blocking<T>(M, N);
  const std::vector<T> consts = exact_constants<T, METHOD, INST>(p, N, T(o.dt));
  const T* cp = METHOD == EXACT ? consts.data() : nullptr;
  const std::vector<T> inverses = inverse_taus<T>(p, N);
  const T* ip = inverses.data();
  const int64_t nseg = (sh.steps + kSeg - 1) / kSeg;
  const int64_t nc = (bk.cols() + W - 1) / W;  // chunks per block
  const bool stream = streams_output(sh.steps, MN, sizeof(T));
  at::parallel_for(0, bk.count(), 1, [&](int64_t begin, int64_t end) {
    const T dt = T(o.dt), u_th = T(o.u_th), span = T(o.span), u_c = T(o.u_c);
    // per block: the chunks' constants (nc x C_ROWS x W) and states (nc x 4 x W); a dump row for the
    // trace when it is not recorded
    T* const qbuf = scratch<T>(0, nc * C_ROWS * W);
    T* const state = scratch<T>(1, nc * 4 * W);
    T* const dump = scratch<T>(2, W);
    T* const row = stream ? scratch<T>(3, W) : nullptr;
    for (int64_t id = begin; id < end; ++id) {
      const Block b = block_at(bk, M, N, id);
      const int64_t nck = (b.count + W - 1) / W;
      for (int64_t c = 0; c < nck; ++c)
        gather_chunk(p, ip, cp, N, b.col0 + c * W, std::min(W, b.count - c * W), qbuf + c * C_ROWS * W);
      const T* starts[4] = {m0, f0, s0, us0};
      T* finals[4] = {mT, fT, sT, usT};
      for (int64_t c = 0; c < nck; ++c) {
        const int64_t col = b.col0 + c * W, w = std::min(W, b.count - c * W);
        T* x = state + c * 4 * W;
        for (int v = 0; v < 4; ++v) std::copy(starts[v] + col, starts[v] + col + w, x + v * W);
      }
      for (int64_t sg = 0; sg < nseg; ++sg) {
        const int64_t t0 = sg * kSeg, t1 = std::min(sh.steps, t0 + kSeg);
        for (int64_t c = 0; c < nck; ++c) {
          const int64_t col = b.col0 + c * W, w = std::min(W, b.count - c * W);
          T* x = state + c * 4 * W;
          if (ckpt) {
            T* dst = ckpt + sg * 4 * MN + col;
            for (int v = 0; v < 4; ++v) std::copy(x + v * W, x + v * W + w, dst + v * MN);
          }
          const int64_t off = t0 * MN + col;
          forward_chunk<T, METHOD, OTA, CLIP, INST>(w, t1 - t0, x, i_in + off, MN, qbuf + c * C_ROWS * W, dt,
                                                    u_th, span, u_c, s_out + off,
                                                    u_trace ? u_trace + off : dump, u_trace ? MN : 0, row);
        }
      }
      for (int64_t c = 0; c < nck; ++c) {
        const int64_t col = b.col0 + c * W, w = std::min(W, b.count - c * W);
        const T* x = state + c * 4 * W;
        for (int v = 0; v < 4; ++v) std::copy(x + v * W, x + v * W + w, finals[v] + col);
      }
    }
    if (stream) stream_fence();
  });
}

// ---------------------------------------------------------------------------------------------------
// Backward (reverse-time adjoint of the forward above, one step_vjp per step, segment by segment)
// ---------------------------------------------------------------------------------------------------
// A gradient of the outputs s or of the membrane trace: absent, one value for every element (autograd's
// expanded gradient of a sum), or dense (T, M, N).
template <typename T>
struct OutGrad {
  const T* ptr;
  bool scalar;
};

// Recompute the states of one segment of a chunk: x holds (steps + 1) levels of 4 x W values, level 0
// the checkpoint; level i + 1 = step(level i) with the input of step t0 + i (in, row stride MN); th
// (steps levels of 4 x W) gets the elements' tanh at level i, for the adjoint. Bit-identical to the
// forward: the same arithmetic on the same values.
template <typename T, int METHOD, bool OTA, bool INST>
MTC_INLINE void recompute_chunk(int64_t w, int64_t steps, T* __restrict x, T* __restrict th,
                                const T* __restrict in, int64_t MN, const T* __restrict q, T dt) {
  constexpr int64_t W = kChunk<T>;
  for (int64_t i = 0; i < steps; ++i) {
    const T* __restrict xi = x + i * 4 * W;
    T* __restrict xo = x + (i + 1) * 4 * W;
    T* __restrict ti = th + i * 4 * W;
    const T* __restrict ini = in + i * MN;
#pragma GCC ivdep
    for (int64_t j = 0; j < w; ++j) {
      const S4<T> xj{xi[j], xi[W + j], xi[2 * W + j], xi[3 * W + j]};
      const Par<T> pj = chunk_par(q, j);
      const Th4<T> e = elements<T, INST>(xj, pj);
      const S4<T> y = step_th<T, METHOD, OTA, INST>(xj, pj, ini[j], dt, chunk_consts<T, METHOD>(q, j), e);
      xo[j] = y.m; xo[W + j] = y.f; xo[2 * W + j] = y.s; xo[3 * W + j] = y.u;
      ti[j] = e.f; ti[W + j] = e.sp; ti[2 * W + j] = e.sm; ti[3 * W + j] = e.us;
    }
  }
}

// The adjoint of one step for one chunk (see step_vjp): x the 4 x W states before the step (the
// membrane after it follows at x + 4W), gso/guo the gradients of s and of the membrane trace at this
// step (a constant row when absent or broadcast), th the elements' tanh before the step, gi the input
// gradient out, adj the 4 x W state
// adjoints (in place), ac the 14 x W parameter-gradient accumulators.
template <typename T, int METHOD, bool OTA, bool CLIP, bool INST>
MTC_INLINE void vjp_chunk(int64_t j0, int64_t w, const T* __restrict x, const T* __restrict th, const T* __restrict in,
                          const T* __restrict gso,
                          const T* __restrict guo, const T* __restrict q, T dt, T u_th, T span, T u_c,
                          T* __restrict gi, T* __restrict adj, T* __restrict ac) {
  constexpr int64_t W = kChunk<T>;
#pragma GCC ivdep
  for (int64_t j = j0; j < w; ++j) {
    // adjoint of U_m after the step: from the next step, the output s and the trace
    const T gmo = adj[j] + gso[j] * transduce_grad<T, CLIP>(x[4 * W + j], u_th, span, u_c) + guo[j];
    const VJP<T> v = step_vjp<T, METHOD, OTA, INST>(S4<T>{x[j], x[W + j], x[2 * W + j], x[3 * W + j]},
                                                     chunk_par(q, j), in[j], dt, chunk_consts<T, METHOD>(q, j),
                                                     S4<T>{gmo, adj[W + j], adj[2 * W + j], adj[3 * W + j]},
                                                     Th4<T>{th[j], th[W + j], th[2 * W + j], th[3 * W + j]});
    const PGrad<T> g = v.gp;
    gi[j] = v.gin;
    adj[j] = v.gx.m; adj[W + j] = v.gx.f; adj[2 * W + j] = v.gx.s; adj[3 * W + j] = v.gx.u;
    ac[A_F * W + j] += g.af; ac[A_SP * W + j] += g.asp; ac[A_SM * W + j] += g.asm_;
    ac[A_US * W + j] += g.aus; ac[D_F * W + j] += g.df; ac[D_SP * W + j] += g.dsp;
    ac[D_SM * W + j] += g.dsm; ac[D_US * W + j] += g.dus; ac[TAU_M * W + j] += g.taum;
    ac[TAU_F * W + j] += g.tauf; ac[TAU_S * W + j] += g.taus; ac[TAU_US * W + j] += g.tauu;
    ac[RES * W + j] += g.res; ac[U_REST * W + j] += g.urest;
  }
}

// One vector of lanes [jb, jb + kGroup) through a whole segment, newest step first: vjp_chunk per step on
// those lanes only (bit-identical), so that with time innermost the lanes' 4 state adjoints and
// 14 accumulators stay at fixed addresses the compiler keeps in registers across the steps instead of
// loading and storing them every step. Row strides: in, gi and dense gradients MN; a constant row 0.
#ifdef __AVX512F__
constexpr int64_t kVectorBytes = 64;
#else
constexpr int64_t kVectorBytes = 32;
#endif
template <typename T>
constexpr int64_t kGroup = kVectorBytes / int64_t(sizeof(T));

// One vector of a group to memory with a non-temporal store where aligned (see stream_row).
template <typename T>
MTC_INLINE void stream_group(T* __restrict dst, const T* __restrict src) {
#if defined(__AVX512F__) || defined(__AVX__)
  if constexpr ((std::is_same_v<T, float> || std::is_same_v<T, double>) && kVectorBytes == kStreamAlign) {
    if ((reinterpret_cast<std::uintptr_t>(dst) % kStreamAlign) == 0) {
      stream_vector(dst, src);
      return;
    }
  }
#endif
  std::copy(src, src + kGroup<T>, dst);
}

template <typename T, int METHOD, bool OTA, bool CLIP, bool INST>
MTC_INLINE void vjp_group(int64_t jb, int64_t steps, const T* __restrict x, const T* __restrict th,
                          const T* __restrict in, int64_t MN, const T* __restrict gs, int64_t gs_stride,
                          const T* __restrict gu, int64_t gu_stride, const T* __restrict q, T dt, T u_th, T span,
                          T u_c, T* __restrict gi, T* __restrict adj, T* __restrict ac,
                          T* __restrict row /* W, or null: gi written through the cache */) {
  constexpr int64_t W = kChunk<T>, G = kGroup<T>;
  for (int64_t i = steps - 1; i >= 0; --i) {
    const T* __restrict xi = x + i * 4 * W;
    const T* __restrict ti = th + i * 4 * W;
    const T* __restrict ini = in + i * MN;
    const T* __restrict gsi = gs + i * gs_stride;
    const T* __restrict gui = gu + i * gu_stride;
    T* __restrict gii = gi + i * MN;
    // vjp_chunk over exactly G lanes (a compile-time trip count: one vector)
    if (row) {
      vjp_chunk<T, METHOD, OTA, CLIP, INST>(jb, jb + G, xi, ti, ini, gsi, gui, q, dt, u_th, span, u_c, row, adj, ac);
      stream_group(gii + jb, row + jb);
    } else {
      vjp_chunk<T, METHOD, OTA, CLIP, INST>(jb, jb + G, xi, ti, ini, gsi, gui, q, dt, u_th, span, u_c, gii, adj, ac);
    }
  }
}

template <typename T, int METHOD, bool OTA, bool CLIP, bool INST>
void backward_kernel(const Shape& sh, const Options& o, OutGrad<T> g_s, OutGrad<T> g_u, const T* g_mT,
                     const T* g_fT, const T* g_sT, const T* g_usT, const T* i_in, const T* p,
                     const T* ckpt, T* g_i, T* g_m0, T* g_f0, T* g_s0, T* g_us0,
                     T* g_p /* (N_ROWS, M, N) */) {
  constexpr int64_t W = kChunk<T>;
  const int64_t N = sh.n, M = sh.batch, MN = M * N;
  const Blocking bk = blocking<T>(M, N);
  const std::vector<T> consts = exact_constants<T, METHOD, INST>(p, N, T(o.dt));
  const T* cp = METHOD == EXACT ? consts.data() : nullptr;
  const std::vector<T> inverses = inverse_taus<T>(p, N);
  const T* ip = inverses.data();
  const int64_t nseg = (sh.steps + kSeg - 1) / kSeg;
  const int64_t nc = (bk.cols() + W - 1) / W;  // chunks per block
  const bool stream = streams_output(sh.steps, MN, sizeof(T));
  at::parallel_for(0, bk.count(), 1, [&](int64_t begin, int64_t end) {
    const T dt = T(o.dt), u_th = T(o.u_th), span = T(o.span), u_c = T(o.u_c);
    // per chunk: segment states (kSeg + 1 levels of 4 x W); per block: the chunks' constants
    // (nc x C_ROWS x W), state adjoints (nc x 4 x W) and accumulators (nc x N_ROWS x W)
    T* const x = scratch<T>(0, (kSeg + 1) * 4 * W);
    T* const th = scratch<T>(1, kSeg * 4 * W);
    T* const qbuf = scratch<T>(2, nc * C_ROWS * W);
    T* const adj_buf = scratch<T>(3, nc * 4 * W);
    T* const acc_buf = scratch<T>(4, nc * N_ROWS * W);
    T* const gs_fill = scratch<T>(5, W);
    T* const gu_fill = scratch<T>(6, W);
    T* const gi_row = stream ? scratch<T>(7, W) : nullptr;
    std::fill(gs_fill, gs_fill + W, g_s.scalar ? g_s.ptr[0] : T(0));
    std::fill(gu_fill, gu_fill + W, g_u.scalar ? g_u.ptr[0] : T(0));
    for (int64_t id = begin; id < end; ++id) {
      const Block b = block_at(bk, M, N, id);
      const int64_t nck = (b.count + W - 1) / W;
      for (int64_t c = 0; c < nck; ++c)
        gather_chunk(p, ip, cp, N, b.col0 + c * W, std::min(W, b.count - c * W), qbuf + c * C_ROWS * W);
      std::fill(acc_buf, acc_buf + nc * N_ROWS * W, T(0));
      for (int64_t c = 0; c < nck; ++c) {
        const int64_t col = b.col0 + c * W, w = std::min(W, b.count - c * W);
        T* adj = adj_buf + c * 4 * W;
        const T* finals[4] = {g_mT, g_fT, g_sT, g_usT};
        for (int v = 0; v < 4; ++v) {
          if (finals[v]) std::copy(finals[v] + col, finals[v] + col + w, adj + v * W);
          else std::fill(adj + v * W, adj + v * W + w, T(0));
        }
      }
      for (int64_t sg = nseg - 1; sg >= 0; --sg) {
        const int64_t t0 = sg * kSeg, t1 = std::min(sh.steps, t0 + kSeg);
        const T* src = ckpt + sg * 4 * MN;
        for (int64_t c = 0; c < nck; ++c) {
          const int64_t col = b.col0 + c * W, w = std::min(W, b.count - c * W);
          const T* q = qbuf + c * C_ROWS * W;
          T* adj = adj_buf + c * 4 * W;
          T* acc = acc_buf + c * N_ROWS * W;
          for (int v = 0; v < 4; ++v) std::copy(src + v * MN + col, src + v * MN + col + w, x + v * W);
          recompute_chunk<T, METHOD, OTA, INST>(w, t1 - t0, x, th, i_in + t0 * MN + col, MN, q, dt);
          // absent or broadcast gradients read a constant row (0 or the value): no branch in the loop
          const bool gs_dense = g_s.ptr && !g_s.scalar, gu_dense = g_u.ptr && !g_u.scalar;
          // (one-evaluation methods only: RK4's four stage adjoints per lane do not fit in the registers
          // and measured ~7 % slower this way; Euler's backward ~8 % faster)
          const int64_t off0 = t0 * MN + col;
          const int64_t full = (METHOD == EULER || METHOD == EXACT) ? w / kGroup<T> * kGroup<T> : 0;
          for (int64_t jb = 0; jb < full; jb += kGroup<T>)  // whole vectors: time innermost
            vjp_group<T, METHOD, OTA, CLIP, INST>(jb, t1 - t0, x, th, i_in + off0, MN,
                                                  gs_dense ? g_s.ptr + off0 : gs_fill, gs_dense ? MN : 0,
                                                  gu_dense ? g_u.ptr + off0 : gu_fill, gu_dense ? MN : 0, q, dt, u_th,
                                                  span, u_c, g_i + off0, adj, acc, gi_row);
          if (full < w) {  // the last partial vector of a block: step by step
            for (int64_t t = t1 - 1; t >= t0; --t) {
              const int64_t off = t * MN + col;
              const T* gso = gs_dense ? g_s.ptr + off : gs_fill;
              const T* guo = gu_dense ? g_u.ptr + off : gu_fill;
              vjp_chunk<T, METHOD, OTA, CLIP, INST>(full, w, x + (t - t0) * 4 * W, th + (t - t0) * 4 * W, i_in + off,
                                                    gso, guo, q, dt, u_th, span, u_c, g_i + off, adj, acc);
            }
          }
        }
      }
      for (int64_t c = 0; c < nck; ++c) {
        const int64_t col = b.col0 + c * W, w = std::min(W, b.count - c * W);
        const T* adj = adj_buf + c * 4 * W;
        const T* acc = acc_buf + c * N_ROWS * W;
        T* outs[4] = {g_m0, g_f0, g_s0, g_us0};
        for (int v = 0; v < 4; ++v) std::copy(adj + v * W, adj + v * W + w, outs[v] + col);
        for (int64_t row = 0; row < N_ROWS; ++row)
          std::copy(acc + row * W, acc + row * W + w, g_p + row * MN + col);
      }
    }
    if (stream) stream_fence();
  });
}

#ifndef MTC_STANDALONE
// ---------------------------------------------------------------------------------------------------
// Dispatch over the compile-time variants
// ---------------------------------------------------------------------------------------------------
template <typename Fn>
void dispatch_variant(int filter_kind, bool clip, bool inst, Fn&& fn) {
  auto with_inst = [&](auto meth, auto ota, auto c) {
    if (inst) fn(meth, ota, c, std::true_type{}); else fn(meth, ota, c, std::false_type{});
  };
  auto with_clip = [&](auto meth, auto ota) {
    if (clip) with_inst(meth, ota, std::true_type{}); else with_inst(meth, ota, std::false_type{});
  };
  auto with_ota = [&](auto meth) {
    if (filter_kind % 2) with_clip(meth, std::true_type{}); else with_clip(meth, std::false_type{});
  };
  switch (filter_kind / 2) {
    case EULER: with_ota(std::integral_constant<int, EULER>{}); break;
    case EXACT: with_ota(std::integral_constant<int, EXACT>{}); break;
    case HEUN: with_ota(std::integral_constant<int, HEUN>{}); break;
    case RK4: with_ota(std::integral_constant<int, RK4>{}); break;
    default: TORCH_CHECK(false, "mtc_fused: unknown filter kind ", filter_kind);
  }
}

template <typename T>
const T* opt_ptr(const std::optional<at::Tensor>& t) {
  return (t.has_value() && t->defined()) ? t->data_ptr<T>() : nullptr;
}

void check_layout(const at::Tensor& i_in, const std::vector<at::Tensor>& state,
                  const at::Tensor& params) {
  TORCH_CHECK(i_in.dim() == 3 && i_in.is_contiguous() && i_in.device().is_cpu(),
              "mtc_fused: i_in must be a contiguous CPU tensor (T, M, N)");
  TORCH_CHECK(i_in.scalar_type() == at::kFloat || i_in.scalar_type() == at::kDouble,
              "mtc_fused: dtype must be float32 or float64");
  TORCH_CHECK(state.size() == 4, "mtc_fused: state must be 4 tensors (u_m, u_f, u_s, u_us)");
  for (const auto& s : state) {
    TORCH_CHECK(s.is_contiguous() && s.device().is_cpu() && s.scalar_type() == i_in.scalar_type() &&
                    s.dim() == 2 && s.size(0) == i_in.size(1) && s.size(1) == i_in.size(2),
                "mtc_fused: each state tensor must be contiguous (M, N) of the input's dtype");
  }
  TORCH_CHECK(params.is_contiguous() && params.device().is_cpu() &&
                  params.scalar_type() == i_in.scalar_type() && params.dim() == 2 &&
                  params.size(0) == N_ROWS && params.size(1) == i_in.size(2),
              "mtc_fused: params must be contiguous (", N_ROWS, ", N) of the input's dtype");
}

void check_grad(const std::optional<at::Tensor>& g, const at::Tensor& like) {
  if (g.has_value() && g->defined()) {
    TORCH_CHECK(g->is_contiguous() && g->sizes() == like.sizes() &&
                    g->scalar_type() == like.scalar_type(),
                "mtc_fused: gradient layout mismatch");
  }
}

// Returns [s, u_trace, checkpoints, u_m(T), u_f(T), u_s(T), u_us(T)]; what was not asked for is an
// empty (numel 0) tensor. Checkpoints (store_states): the state every kSeg steps, for the backward.
std::vector<at::Tensor> rollout_forward(const at::Tensor& i_in, std::vector<at::Tensor> state,
                                        const at::Tensor& params, double dt, int64_t filter_kind,
                                        bool clip, double u_th, double u_sat, double u_c,
                                        bool instantaneous_fast, bool record_membrane,
                                        bool store_states) {
  check_layout(i_in, state, params);
  const Shape sh{i_in.size(0), i_in.size(1), i_in.size(2)};
  const Options o{dt, u_th, u_sat - u_th, u_c};
  auto s_out = cached_empty(i_in.sizes(), i_in.options());
  auto none = at::empty({0}, i_in.options());
  auto u_trace = record_membrane ? cached_empty(i_in.sizes(), i_in.options()) : none;
  const int64_t nseg = (sh.steps + kSeg - 1) / kSeg;
  auto ckpt = store_states ? cached_empty({nseg, 4, sh.batch, sh.n}, i_in.options()) : none;
  auto mT = at::empty_like(state[0]), fT = at::empty_like(state[0]);
  auto sT = at::empty_like(state[0]), usT = at::empty_like(state[0]);
  AT_DISPATCH_FLOATING_TYPES(i_in.scalar_type(), "mtc_fused_forward", [&] {
    using T = scalar_t;
    auto ptr = [](at::Tensor& t) { return t.numel() > 0 ? t.data_ptr<T>() : nullptr; };
    dispatch_variant(static_cast<int>(filter_kind), clip, instantaneous_fast,
                     [&](auto meth, auto ota, auto c, auto inst) {
      forward_kernel<T, decltype(meth)::value, decltype(ota)::value, decltype(c)::value, decltype(inst)::value>(
          sh, o, i_in.data_ptr<T>(), state[0].data_ptr<T>(), state[1].data_ptr<T>(),
          state[2].data_ptr<T>(), state[3].data_ptr<T>(), params.data_ptr<T>(), s_out.data_ptr<T>(),
          ptr(u_trace), ptr(ckpt), mT.data_ptr<T>(), fT.data_ptr<T>(), sT.data_ptr<T>(), usT.data_ptr<T>());
    });
  });
  return {s_out, u_trace, ckpt, mT, fT, sT, usT};
}

template <typename T>
OutGrad<T> out_grad(const std::optional<at::Tensor>& g, const at::Tensor& like) {
  if (!g.has_value() || !g->defined()) return {nullptr, false};
  const bool scalar = g->numel() == 1 && like.numel() != 1;
  TORCH_CHECK(g->scalar_type() == like.scalar_type() && (scalar || (g->is_contiguous() && g->sizes() == like.sizes())),
              "mtc_fused: output gradient layout mismatch");
  return {g->data_ptr<T>(), scalar};
}

// Returns [dL/di_in, dL/du_m0, dL/du_f0, dL/du_s0, dL/du_us0, dL/dparams (N_ROWS, N)]. The gradients
// of s and of the membrane trace may be one value broadcast over (T, M, N) (numel 1).
std::vector<at::Tensor> rollout_backward(
    const std::optional<at::Tensor>& g_s, const std::optional<at::Tensor>& g_u,
    const std::optional<at::Tensor>& g_mT, const std::optional<at::Tensor>& g_fT,
    const std::optional<at::Tensor>& g_sT, const std::optional<at::Tensor>& g_usT,
    const at::Tensor& i_in, std::vector<at::Tensor> state, const at::Tensor& params,
    const at::Tensor& ckpt, double dt, int64_t filter_kind, bool clip, double u_th,
    double u_sat, double u_c, bool instantaneous_fast) {
  check_layout(i_in, state, params);
  check_grad(g_mT, state[0]); check_grad(g_fT, state[0]);
  check_grad(g_sT, state[0]); check_grad(g_usT, state[0]);
  const Shape sh{i_in.size(0), i_in.size(1), i_in.size(2)};
  const int64_t nseg = (sh.steps + kSeg - 1) / kSeg;
  TORCH_CHECK(ckpt.is_contiguous() && ckpt.scalar_type() == i_in.scalar_type() && ckpt.dim() == 4 &&
                  ckpt.size(0) == nseg && ckpt.size(1) == 4 && ckpt.size(2) == sh.batch && ckpt.size(3) == sh.n,
              "mtc_fused: the saved checkpoints must be (ceil(T/", kSeg, "), 4, M, N)");
  const Options o{dt, u_th, u_sat - u_th, u_c};
  auto g_i = cached_empty(i_in.sizes(), i_in.options());
  auto g_m0 = at::empty_like(state[0]), g_f0 = at::empty_like(state[0]);
  auto g_s0 = at::empty_like(state[0]), g_us0 = at::empty_like(state[0]);
  auto g_cols = cached_empty({N_ROWS, sh.batch, sh.n}, i_in.options());
  auto g_p = at::empty({N_ROWS, sh.n}, i_in.options());
  AT_DISPATCH_FLOATING_TYPES(i_in.scalar_type(), "mtc_fused_backward", [&] {
    using T = scalar_t;
    dispatch_variant(static_cast<int>(filter_kind), clip, instantaneous_fast,
                     [&](auto meth, auto ota, auto c, auto inst) {
      backward_kernel<T, decltype(meth)::value, decltype(ota)::value, decltype(c)::value, decltype(inst)::value>(
          sh, o, out_grad<T>(g_s, i_in), out_grad<T>(g_u, i_in), opt_ptr<T>(g_mT), opt_ptr<T>(g_fT),
          opt_ptr<T>(g_sT), opt_ptr<T>(g_usT), i_in.data_ptr<T>(), params.data_ptr<T>(), ckpt.data_ptr<T>(),
          g_i.data_ptr<T>(), g_m0.data_ptr<T>(), g_f0.data_ptr<T>(), g_s0.data_ptr<T>(), g_us0.data_ptr<T>(),
          g_cols.data_ptr<T>());
    });
    // sum over the batch in a fixed order (not at::sum, whose reduction order depends on the CPU)
    const T* src = g_cols.data_ptr<T>();
    T* dst = g_p.data_ptr<T>();
    const int64_t M = sh.batch, N = sh.n;
    for (int64_t row = 0; row < N_ROWS; ++row) {
      T* out = dst + row * N;
      std::fill(out, out + N, T(0));
      for (int64_t m = 0; m < M; ++m) {
        const T* in = src + (row * M + m) * N;
        for (int64_t n = 0; n < N; ++n) out[n] += in[n];
      }
    }
  });
  return {g_i, g_m0, g_f0, g_s0, g_us0, g_p};
}

// Sets the buffer cache's limit in bytes (0: off); what it holds beyond the limit is freed now.
// Returns the bytes freed.
int64_t set_buffer_cache(int64_t limit_bytes) {
  TORCH_CHECK(limit_bytes >= 0, "mtc_fused: the buffer cache limit must be >= 0 bytes");
  BufferCache& cache = BufferCache::instance();
  const size_t before = cache.cached_bytes();
  cache.set_limit(size_t(limit_bytes));
  return int64_t(before - cache.cached_bytes());
}

}  // namespace

TORCH_LIBRARY(mtc_analog, m) {
  m.def("rollout_forward", &rollout_forward);
  m.def("rollout_backward", &rollout_backward);
  m.def("set_buffer_cache", &set_buffer_cache);
}
#else
}  // namespace
#endif  // MTC_STANDALONE
