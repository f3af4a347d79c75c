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
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/sum.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#ifdef MTC_USE_LIBMVEC
// glibc's libmvec has SIMD variants of these, but <math.h> only declares them under -ffast-math,
// which we avoid (it would change NaN handling and the reference's rounding). Declaring them here
// lets `#pragma omp simd` loops call the vector versions (linked with -lmvec).
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

constexpr int64_t kBlock = 64;  // neurons per inner block (fits the local state in L1)

#define MTC_INLINE inline __attribute__((always_inline))

struct Options {
  double dt;
  double u_th, span, u_c;  // transduction constants [V_s]
};

// The state of one neuron column, and one neuron's parameters (values, so that the per-column
// functions below inline into `omp simd` loops without address-taken locals).
template <typename T>
struct S4 {
  T m, f, s, u;
};

template <typename T>
struct Par {
  T af, asp, asm_, aus, df, dsp, dsm, dus, taum, tauf, taus, tauu, res, urest;
};

// Gradient accumulators of the parameters (same fields as Par).
template <typename T>
using PGrad = Par<T>;

template <typename T>
MTC_INLINE S4<T> axpy(const S4<T>& x, T a, const S4<T>& k) {
  return {x.m + a * k.m, x.f + a * k.f, x.s + a * k.s, x.u + a * k.u};
}

// The right-hand side dX/dt (equations.py::rhs). INST: tau_f = 0, the fast element reads U_m and
// dU_f/dt is dU_m/dt. OTA: the filters are tanh follower-integrators.
template <typename T, bool OTA, bool INST>
MTC_INLINE S4<T> rhs(const S4<T>& x, const Par<T>& p, T in) {
  const T fr = INST ? x.m : x.f;
  const T itot = -p.af * std::tanh(fr - p.df) + p.asp * std::tanh(x.s - p.dsp) +
                 -p.asm_ * std::tanh(x.s - p.dsm) + p.aus * std::tanh(x.u - p.dus);
  const T dm = (-(x.m - p.urest) + p.res * (in - itot)) / p.taum;
  auto g = [](T v) { if constexpr (OTA) return std::tanh(v); else return v; };
  const T df = INST ? dm : g(x.m - x.f) / p.tauf;
  return {dm, df, g(x.m - x.s) / p.taus, g(x.m - x.u) / p.tauu};
}

// Vector-Jacobian product of the RHS at state x: returns w^T d rhs/dX, adds w^T d rhs/dparams to
// `gp` and w^T d rhs/dI_in to `gin`. With A = w_m/tau_m (w_m + w_f when INST: dU_f/dt is dU_m/dt)
// and q_k = A R a_k (1 - tanh_k^2): dI: A R; da_f: A R tanh_f, da_{s+}: -A R tanh_{s+}, da_{s-}:
// A R tanh_{s-}, da_us: -A R tanh_us; dd_f: -q_f, dd_{s+}: q_{s+}, dd_{s-}: -q_{s-}, dd_us: q_us;
// dtau_m: -w_m rate_m/tau_m; dR: A (I_in - I_tot); dU_rest: A; state: m: -A (+ q_f if INST),
// f: q_f, s: -q_{s+} + q_{s-}, us: -q_us. Each filter rate g(U_m - U_x)/tau_x adds w_x g'/tau_x to
// m, -w_x g'/tau_x to x, and -w_x g/tau_x^2 to tau_x.
template <typename T, bool OTA, bool INST>
MTC_INLINE S4<T> rhs_vjp(const S4<T>& x, const Par<T>& p, T in, const S4<T>& w, PGrad<T>& gp, T& gin) {
  const T fr = INST ? x.m : x.f;
  const T th_f = std::tanh(fr - p.df), th_sp = std::tanh(x.s - p.dsp);
  const T th_sm = std::tanh(x.s - p.dsm), th_us = std::tanh(x.u - p.dus);
  const T itot = -p.af * th_f + p.asp * th_sp + -p.asm_ * th_sm + p.aus * th_us;
  const T drive = in - itot;
  const T dm = (-(x.m - p.urest) + p.res * drive) / p.taum;
  const T wm = INST ? w.m + w.f : w.m;
  const T A = wm / p.taum, AR = A * p.res;
  const T q_f = AR * p.af * (T(1) - th_f * th_f);
  const T q_sp = AR * p.asp * (T(1) - th_sp * th_sp);
  const T q_sm = AR * p.asm_ * (T(1) - th_sm * th_sm);
  const T q_us = AR * p.aus * (T(1) - th_us * th_us);
  gin += AR;
  gp.af += AR * th_f;
  gp.asp -= AR * th_sp;
  gp.asm_ += AR * th_sm;
  gp.aus -= AR * th_us;
  gp.df -= q_f;
  gp.dsp += q_sp;
  gp.dsm -= q_sm;
  gp.dus += q_us;
  gp.taum -= wm * dm / p.taum;
  gp.res += A * drive;
  gp.urest += A;
  S4<T> out{-A, T(0), -q_sp + q_sm, -q_us};
  if constexpr (INST) out.m += q_f; else out.f = q_f;
  // one filter: rate = g(U_m - U_x)/tau
  auto filt = [&](T ux, T tau, T wx, T& gm, T& gx, T& gtau) {
    const T d = x.m - ux;
    T h, dh;
    if constexpr (OTA) { h = std::tanh(d); dh = T(1) - h * h; } else { h = d; dh = T(1); }
    const T c = wx * dh / tau;
    gm += c;
    gx -= c;
    gtau -= wx * h / (tau * tau);
  };
  if constexpr (!INST) filt(x.f, p.tauf, w.f, out.m, out.f, gp.tauf);
  filt(x.s, p.taus, w.s, out.m, out.s, gp.taus);
  filt(x.u, p.tauu, w.u, out.m, out.u, gp.tauu);
  return out;
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

// One step of `dt` (step.py::mtc_step). U_f is U_m after the step when INST.
template <typename T, int METHOD, bool OTA, bool INST>
MTC_INLINE S4<T> step(const S4<T>& x, const Par<T>& p, T in, T dt, const Consts<T>& c) {
  S4<T> y;
  if constexpr (METHOD == EULER) {
    y = axpy(x, dt, rhs<T, OTA, INST>(x, p, in));
  } else if constexpr (METHOD == EXACT) {
    const S4<T> k = rhs<T, OTA, INST>(x, p, in);
    y = {x.m + dt * k.m, INST ? x.f : exact_filter<T, OTA>(x.m, x.f, c.cf),
         exact_filter<T, OTA>(x.m, x.s, c.cs), exact_filter<T, OTA>(x.m, x.u, c.cu)};
  } else if constexpr (METHOD == HEUN) {
    const S4<T> k1 = rhs<T, OTA, INST>(x, p, in);
    const S4<T> k2 = rhs<T, OTA, INST>(axpy(x, dt, k1), p, in);
    const T h = T(0.5) * dt;
    y = {x.m + h * (k1.m + k2.m), x.f + h * (k1.f + k2.f), x.s + h * (k1.s + k2.s), x.u + h * (k1.u + k2.u)};
  } else {
    const T h = T(0.5) * dt;
    const S4<T> k1 = rhs<T, OTA, INST>(x, p, in);
    const S4<T> k2 = rhs<T, OTA, INST>(axpy(x, h, k1), p, in);
    const S4<T> k3 = rhs<T, OTA, INST>(axpy(x, h, k2), p, in);
    const S4<T> k4 = rhs<T, OTA, INST>(axpy(x, dt, k3), p, in);
    const T sixth = dt / T(6);
    auto comb = [&](T x0, T a, T b, T cc, T d) { return x0 + sixth * (a + T(2) * b + T(2) * cc + d); };
    y = {comb(x.m, k1.m, k2.m, k3.m, k4.m), comb(x.f, k1.f, k2.f, k3.f, k4.f),
         comb(x.s, k1.s, k2.s, k3.s, k4.s), comb(x.u, k1.u, k2.u, k3.u, k4.u)};
  }
  if constexpr (INST) y.f = y.m;
  return y;
}

// Adjoint of one step: given gb = dL/dX' (after the step), returns dL/dX (before it) and adds the
// parameter and input gradients. The stages are recomputed from the step-start state x, then each
// stage's RHS is pulled back with rhs_vjp (reverse order of the stages).
template <typename T, int METHOD, bool OTA, bool INST>
MTC_INLINE S4<T> step_vjp(const S4<T>& x, const Par<T>& p, T in, T dt, const Consts<T>& c, S4<T> gb,
                          PGrad<T>& gp, T& gin) {
  if constexpr (INST) {  // U_f' is U_m': its adjoint belongs to U_m'
    gb.m += gb.f;
    gb.f = T(0);
  }
  auto scale = [](const S4<T>& v, T a) { return S4<T>{a * v.m, a * v.f, a * v.s, a * v.u}; };
  auto add = [](const S4<T>& a, const S4<T>& b) { return S4<T>{a.m + b.m, a.f + b.f, a.s + b.s, a.u + b.u}; };
  if constexpr (METHOD == EULER) {
    return add(gb, rhs_vjp<T, OTA, INST>(x, p, in, scale(gb, dt), gp, gin));
  } else if constexpr (METHOD == EXACT) {
    const S4<T> w{dt * gb.m, T(0), T(0), T(0)};
    S4<T> gx = rhs_vjp<T, OTA, INST>(x, p, in, w, gp, gin);
    gx.m += gb.m;
    auto filt = [&](T ux, T cx, T tau, T gbx, T& gxx, T& gtau) {
      const FilterPartials<T> k = exact_partials<T, OTA>(x.m, ux, cx, tau, dt);
      gx.m += gbx * (T(1) - k.kx);
      gxx += gbx * k.kx;
      gtau += gbx * k.ktau;
    };
    if constexpr (!INST) filt(x.f, c.cf, p.tauf, gb.f, gx.f, gp.tauf);
    filt(x.s, c.cs, p.taus, gb.s, gx.s, gp.taus);
    filt(x.u, c.cu, p.tauu, gb.u, gx.u, gp.tauu);
    return gx;
  } else if constexpr (METHOD == HEUN) {
    const T h = T(0.5) * dt;
    const S4<T> k1 = rhs<T, OTA, INST>(x, p, in);
    const S4<T> y2 = axpy(x, dt, k1);
    const S4<T> g2 = rhs_vjp<T, OTA, INST>(y2, p, in, scale(gb, h), gp, gin);   // adjoint of Y2
    const S4<T> w1 = axpy(scale(gb, h), dt, g2);                                // adjoint of k1
    const S4<T> g1 = rhs_vjp<T, OTA, INST>(x, p, in, w1, gp, gin);
    return add(add(gb, g1), g2);
  } else {
    const T h = T(0.5) * dt, sixth = dt / T(6), third = dt / T(3);
    const S4<T> k1 = rhs<T, OTA, INST>(x, p, in);
    const S4<T> y2 = axpy(x, h, k1);
    const S4<T> k2 = rhs<T, OTA, INST>(y2, p, in);
    const S4<T> y3 = axpy(x, h, k2);
    const S4<T> k3 = rhs<T, OTA, INST>(y3, p, in);
    const S4<T> y4 = axpy(x, dt, k3);
    const S4<T> g4 = rhs_vjp<T, OTA, INST>(y4, p, in, scale(gb, sixth), gp, gin);
    const S4<T> g3 = rhs_vjp<T, OTA, INST>(y3, p, in, axpy(scale(gb, third), dt, g4), gp, gin);
    const S4<T> g2 = rhs_vjp<T, OTA, INST>(y2, p, in, axpy(scale(gb, third), h, g3), gp, gin);
    const S4<T> g1 = rhs_vjp<T, OTA, INST>(x, p, in, axpy(scale(gb, sixth), h, g2), gp, gin);
    return add(add(add(gb, g1), g2), add(g3, g4));
  }
}

template <typename T, bool CLIP>
MTC_INLINE T transduce(T um, T u_th, T span, T u_c) {
  if constexpr (CLIP) {
    const T z = (um - u_th) / span;
    return z < T(0) ? T(0) : (z > T(1) ? T(1) : z);  // NaN passes through, as torch.clamp
  } else {
    return T(1) / (T(1) + std::exp(T(-2) * (um - u_c)));
  }
}

template <typename T, bool CLIP>
MTC_INLINE T transduce_grad(T um, T u_th, T span, T u_c) {
  if constexpr (CLIP) {
    const T z = (um - u_th) / span;
    // torch.clamp's inclusive mask; `&` (not `&&`) keeps the loop free of branches
    return T((z >= T(0)) & (z <= T(1))) / span;
  } else {
    const T s = T(1) / (T(1) + std::exp(T(-2) * (um - u_c)));
    return T(2) * s * (T(1) - s);
  }
}

struct Shape {
  int64_t steps, batch, n;
};

template <typename T>
MTC_INLINE Par<T> load_par(const T* p, int64_t N, int64_t n) {
  return {p[A_F * N + n],   p[A_SP * N + n],  p[A_SM * N + n],   p[A_US * N + n], p[D_F * N + n],
          p[D_SP * N + n],  p[D_SM * N + n],  p[D_US * N + n],   p[TAU_M * N + n], p[TAU_F * N + n],
          p[TAU_S * N + n], p[TAU_US * N + n], p[RES * N + n], p[U_REST * N + n]};
}

template <typename T>
MTC_INLINE void store_grads(const PGrad<T>& g, T* out, int64_t stride, int64_t at) {
  const T values[N_ROWS] = {g.af, g.asp, g.asm_, g.aus, g.df, g.dsp, g.dsm, g.dus, g.taum, g.tauf, g.taus, g.tauu,
                            g.res, g.urest};
  for (int64_t r = 0; r < N_ROWS; ++r) out[r * stride + at] = values[r];
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

template <typename T, int METHOD>
MTC_INLINE Consts<T> load_consts(const T* c, int64_t N, int64_t n) {
  if constexpr (METHOD == EXACT) return {c[n], c[N + n], c[2 * N + n]};
  else return {T(0), T(0), T(0)};
}

// ---------------------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------------------
template <typename T, int METHOD, bool OTA, bool CLIP, bool INST>
void forward_kernel(const Shape& sh, const Options& o, const T* i_in, const T* m0, const T* f0,
                    const T* s0, const T* us0, const T* p, T* s_out, T* u_trace, T* f_trace,
                    T* s_trace, T* us_trace, T* mT, T* fT, T* sT, T* usT) {
  const int64_t N = sh.n, MN = sh.batch * sh.n;
  const int64_t nb = (N + kBlock - 1) / kBlock;
  const std::vector<T> consts = exact_constants<T, METHOD, INST>(p, N, T(o.dt));
  const T* cp = consts.data();
  at::parallel_for(0, sh.batch * nb, 1, [&](int64_t begin, int64_t end) {
    // locals, not captures: a captured reference may alias the stores and blocks vectorisation
    const T dt = T(o.dt), u_th = T(o.u_th), span = T(o.span), u_c = T(o.u_c);
    T um[kBlock], uf[kBlock], us[kBlock], uu[kBlock];
    T scratch[kBlock];
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t m = blk / nb, n0 = (blk % nb) * kBlock, len = std::min(kBlock, N - n0);
      const int64_t c0 = m * N + n0;
      for (int64_t j = 0; j < len; ++j) {
        um[j] = m0[c0 + j]; uf[j] = f0[c0 + j]; us[j] = s0[c0 + j]; uu[j] = us0[c0 + j];
      }
      for (int64_t t = 0; t < sh.steps; ++t) {
        const int64_t off = t * MN + c0;
        const T* in = i_in + off;
        T* so = s_out + off;
        T* ut = u_trace ? u_trace + off : scratch;
        T* ft = f_trace ? f_trace + off : scratch;
        T* st = s_trace ? s_trace + off : scratch;
        T* ust = us_trace ? us_trace + off : scratch;
#pragma omp simd
        for (int64_t j = 0; j < len; ++j) {
          const Par<T> q = load_par(p, N, n0 + j);
          const S4<T> y = step<T, METHOD, OTA, INST>(S4<T>{um[j], uf[j], us[j], uu[j]}, q, in[j], dt,
                                                      load_consts<T, METHOD>(cp, N, n0 + j));
          um[j] = y.m; uf[j] = y.f; us[j] = y.s; uu[j] = y.u;
          so[j] = transduce<T, CLIP>(y.m, u_th, span, u_c);
          ut[j] = y.m; ft[j] = y.f; st[j] = y.s; ust[j] = y.u;
        }
      }
      for (int64_t j = 0; j < len; ++j) {
        mT[c0 + j] = um[j]; fT[c0 + j] = uf[j]; sT[c0 + j] = us[j]; usT[c0 + j] = uu[j];
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------------
// Backward (reverse-time adjoint of the forward above, one step_vjp per step)
// ---------------------------------------------------------------------------------------------------
template <typename T, int METHOD, bool OTA, bool CLIP, bool INST>
void backward_kernel(const Shape& sh, const Options& o, const T* g_s, const T* g_u, const T* g_mT,
                     const T* g_fT, const T* g_sT, const T* g_usT, const T* i_in, const T* m0,
                     const T* f0, const T* s0, const T* us0, const T* p, const T* u_trace,
                     const T* f_trace, const T* s_trace, const T* us_trace, T* g_i, T* g_m0,
                     T* g_f0, T* g_s0, T* g_us0, T* g_p /* (N_ROWS, M, N) */) {
  const int64_t N = sh.n, MN = sh.batch * sh.n;
  const int64_t nb = (N + kBlock - 1) / kBlock;
  const std::vector<T> consts = exact_constants<T, METHOD, INST>(p, N, T(o.dt));
  const T* cp = consts.data();
  at::parallel_for(0, sh.batch * nb, 1, [&](int64_t begin, int64_t end) {
    const T dt = T(o.dt), u_th = T(o.u_th), span = T(o.span), u_c = T(o.u_c);
    T gm[kBlock], gf[kBlock], gs[kBlock], gu[kBlock];
    PGrad<T> acc[kBlock];
    T zeros[kBlock];
    std::fill(zeros, zeros + kBlock, T(0));
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t m = blk / nb, n0 = (blk % nb) * kBlock, len = std::min(kBlock, N - n0);
      const int64_t c0 = m * N + n0;
      for (int64_t j = 0; j < len; ++j) {
        gm[j] = g_mT ? g_mT[c0 + j] : T(0);
        gf[j] = g_fT ? g_fT[c0 + j] : T(0);
        gs[j] = g_sT ? g_sT[c0 + j] : T(0);
        gu[j] = g_usT ? g_usT[c0 + j] : T(0);
        acc[j] = PGrad<T>{};
      }
      for (int64_t t = sh.steps - 1; t >= 0; --t) {
        const int64_t off = t * MN + c0;
        const int64_t prev = (t - 1) * MN + c0;
        const T* pm = t > 0 ? u_trace + prev : m0 + c0;
        const T* pf = INST ? pm : (t > 0 ? f_trace + prev : f0 + c0);
        const T* ps = t > 0 ? s_trace + prev : s0 + c0;
        const T* pu = t > 0 ? us_trace + prev : us0 + c0;
        const T* mnew = u_trace + off;
        const T* in = i_in + off;
        const T* gso = g_s ? g_s + off : zeros;
        const T* guo = g_u ? g_u + off : zeros;
        T* gi = g_i + off;
#pragma omp simd
        for (int64_t j = 0; j < len; ++j) {
          // adjoint of U_m after the step: from the next step, the output s and the trace
          const T gmo = gm[j] + gso[j] * transduce_grad<T, CLIP>(mnew[j], u_th, span, u_c) + guo[j];
          const Par<T> q = load_par(p, N, n0 + j);
          PGrad<T> g = acc[j];
          T gin = T(0);
          const S4<T> gx = step_vjp<T, METHOD, OTA, INST>(S4<T>{pm[j], pf[j], ps[j], pu[j]}, q, in[j], dt,
                                                           load_consts<T, METHOD>(cp, N, n0 + j),
                                                           S4<T>{gmo, gf[j], gs[j], gu[j]}, g, gin);
          acc[j] = g;
          gi[j] = gin;
          gm[j] = gx.m; gf[j] = gx.f; gs[j] = gx.s; gu[j] = gx.u;
        }
      }
      for (int64_t j = 0; j < len; ++j) {
        g_m0[c0 + j] = gm[j]; g_f0[c0 + j] = gf[j]; g_s0[c0 + j] = gs[j]; g_us0[c0 + j] = gu[j];
        store_grads(acc[j], g_p, MN, c0 + j);
      }
    }
  });
}

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

// Returns [s, u_trace, f_trace, s_trace, us_trace, u_m(T), u_f(T), u_s(T), u_us(T)]; traces that
// were not asked for are empty (numel 0) tensors.
std::vector<at::Tensor> rollout_forward(const at::Tensor& i_in, std::vector<at::Tensor> state,
                                        const at::Tensor& params, double dt, int64_t filter_kind,
                                        bool clip, double u_th, double u_sat, double u_c,
                                        bool instantaneous_fast, bool record_membrane,
                                        bool store_states) {
  check_layout(i_in, state, params);
  const Shape sh{i_in.size(0), i_in.size(1), i_in.size(2)};
  const Options o{dt, u_th, u_sat - u_th, u_c};
  auto s_out = at::empty_like(i_in);
  auto none = at::empty({0}, i_in.options());
  auto u_trace = (record_membrane || store_states) ? at::empty_like(i_in) : none;
  auto f_trace = (store_states && !instantaneous_fast) ? at::empty_like(i_in) : none;
  auto s_trace = store_states ? at::empty_like(i_in) : none;
  auto us_trace = store_states ? at::empty_like(i_in) : none;
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
          ptr(u_trace), ptr(f_trace), ptr(s_trace), ptr(us_trace), mT.data_ptr<T>(),
          fT.data_ptr<T>(), sT.data_ptr<T>(), usT.data_ptr<T>());
    });
  });
  return {s_out, u_trace, f_trace, s_trace, us_trace, mT, fT, sT, usT};
}

// Returns [dL/di_in, dL/du_m0, dL/du_f0, dL/du_s0, dL/du_us0, dL/dparams (N_ROWS, N)].
std::vector<at::Tensor> rollout_backward(
    const std::optional<at::Tensor>& g_s, const std::optional<at::Tensor>& g_u,
    const std::optional<at::Tensor>& g_mT, const std::optional<at::Tensor>& g_fT,
    const std::optional<at::Tensor>& g_sT, const std::optional<at::Tensor>& g_usT,
    const at::Tensor& i_in, std::vector<at::Tensor> state, const at::Tensor& params,
    const at::Tensor& u_trace, const at::Tensor& f_trace, const at::Tensor& s_trace,
    const at::Tensor& us_trace, double dt, int64_t filter_kind, bool clip, double u_th,
    double u_sat, double u_c, bool instantaneous_fast) {
  check_layout(i_in, state, params);
  check_grad(g_s, i_in); check_grad(g_u, i_in);
  check_grad(g_mT, state[0]); check_grad(g_fT, state[0]);
  check_grad(g_sT, state[0]); check_grad(g_usT, state[0]);
  for (const auto* tr : {&u_trace, &s_trace, &us_trace}) {
    TORCH_CHECK(tr->is_contiguous() && tr->sizes() == i_in.sizes() &&
                    tr->scalar_type() == i_in.scalar_type(),
                "mtc_fused: the saved state traces must match the input's shape");
  }
  TORCH_CHECK(instantaneous_fast || (f_trace.sizes() == i_in.sizes() && f_trace.is_contiguous()),
              "mtc_fused: the fast-filter trace is needed when tau_f > 0");
  const Shape sh{i_in.size(0), i_in.size(1), i_in.size(2)};
  const Options o{dt, u_th, u_sat - u_th, u_c};
  auto g_i = at::empty_like(i_in);
  auto g_m0 = at::empty_like(state[0]), g_f0 = at::empty_like(state[0]);
  auto g_s0 = at::empty_like(state[0]), g_us0 = at::empty_like(state[0]);
  auto g_p = at::empty({N_ROWS, sh.batch, sh.n}, i_in.options());
  AT_DISPATCH_FLOATING_TYPES(i_in.scalar_type(), "mtc_fused_backward", [&] {
    using T = scalar_t;
    dispatch_variant(static_cast<int>(filter_kind), clip, instantaneous_fast,
                     [&](auto meth, auto ota, auto c, auto inst) {
      backward_kernel<T, decltype(meth)::value, decltype(ota)::value, decltype(c)::value, decltype(inst)::value>(
          sh, o, opt_ptr<T>(g_s), opt_ptr<T>(g_u), opt_ptr<T>(g_mT), opt_ptr<T>(g_fT),
          opt_ptr<T>(g_sT), opt_ptr<T>(g_usT), i_in.data_ptr<T>(), state[0].data_ptr<T>(),
          state[1].data_ptr<T>(), state[2].data_ptr<T>(), state[3].data_ptr<T>(),
          params.data_ptr<T>(), u_trace.data_ptr<T>(),
          instantaneous_fast ? nullptr : f_trace.data_ptr<T>(), s_trace.data_ptr<T>(),
          us_trace.data_ptr<T>(), g_i.data_ptr<T>(), g_m0.data_ptr<T>(), g_f0.data_ptr<T>(),
          g_s0.data_ptr<T>(), g_us0.data_ptr<T>(), g_p.data_ptr<T>());
    });
  });
  return {g_i, g_m0, g_f0, g_s0, g_us0, at::sum(g_p, 1)};
}

}  // namespace

TORCH_LIBRARY(mtc_analog, m) {
  m.def("rollout_forward", &rollout_forward);
  m.def("rollout_backward", &rollout_backward);
}
