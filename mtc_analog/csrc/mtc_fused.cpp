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

// Filter kinds: method x filter.
enum FilterKind : int { EULER_LINEAR = 0, EULER_OTA = 1, EXACT_LINEAR = 2, EXACT_OTA = 3 };

constexpr int64_t kBlock = 64;  // neurons per inner block (fits the local state in L1)

struct Options {
  double dt;
  double u_th, span, u_c;  // transduction constants [V_s]
};

// Per-column filter constant: Euler uses tau itself (dt*(um-ux)/tau, as the reference), exact the
// decay exp(-dt/tau).
template <typename T, int FK>
inline T filter_const(T tau, T dt) {
  if constexpr (FK == EXACT_LINEAR || FK == EXACT_OTA) {
    return std::exp(-dt / tau);
  } else {
    return tau;
  }
}

template <typename T, int FK>
inline T filter_update(T um, T ux, T c, T dt) {
  if constexpr (FK == EULER_LINEAR) {
    return ux + dt * ((um - ux) / c);
  } else if constexpr (FK == EULER_OTA) {
    return ux + dt * (std::tanh(um - ux) / c);
  } else if constexpr (FK == EXACT_LINEAR) {
    return um + (ux - um) * c;
  } else {
    return um + std::asinh(std::sinh(ux - um) * c);
  }
}

// Partial derivatives of one filter update x' = phi(um, ux; tau): d x'/d ux and d x'/d tau
// (d x'/d um is always 1 - d x'/d ux). Returned by value: address-taken locals stop vectorisation.
template <typename T>
struct FilterPartials {
  T kx, ktau;
};

template <typename T, int FK>
inline FilterPartials<T> filter_partials(T um, T ux, T c, T tau, T dt) {
  if constexpr (FK == EULER_LINEAR) {
    return {T(1) - dt / tau, -dt * (um - ux) / (tau * tau)};
  } else if constexpr (FK == EULER_OTA) {
    const T h = std::tanh(um - ux);
    return {T(1) - dt * (T(1) - h * h) / tau, -dt * h / (tau * tau)};
  } else if constexpr (FK == EXACT_LINEAR) {
    return {c, (ux - um) * c * dt / (tau * tau)};
  } else {
    const T d = ux - um;
    const T w = std::sinh(d) * c;
    const T inv = T(1) / std::sqrt(T(1) + w * w);
    return {std::cosh(d) * c * inv, w * dt / (tau * tau) * inv};
  }
}

template <typename T, bool CLIP>
inline T transduce(T um, T u_th, T span, T u_c) {
  if constexpr (CLIP) {
    const T z = (um - u_th) / span;
    return z < T(0) ? T(0) : (z > T(1) ? T(1) : z);  // NaN passes through, as torch.clamp
  } else {
    return T(1) / (T(1) + std::exp(T(-2) * (um - u_c)));
  }
}

template <typename T, bool CLIP>
inline T transduce_grad(T um, T u_th, T span, T u_c) {
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

// The per-neuron parameter rows of one block of neurons starting at n0 (params are (N_ROWS, N)).
template <typename T>
struct ParamBlock {
  const T *af, *asp, *asm_, *aus, *df, *dsp, *dsm, *dus, *taum, *tauf, *taus, *tauu, *res, *urest;
  ParamBlock(const T* p, int64_t N, int64_t n0)
      : af(p + A_F * N + n0), asp(p + A_SP * N + n0), asm_(p + A_SM * N + n0), aus(p + A_US * N + n0),
        df(p + D_F * N + n0), dsp(p + D_SP * N + n0), dsm(p + D_SM * N + n0), dus(p + D_US * N + n0),
        taum(p + TAU_M * N + n0), tauf(p + TAU_F * N + n0), taus(p + TAU_S * N + n0),
        tauu(p + TAU_US * N + n0), res(p + RES * N + n0), urest(p + U_REST * N + n0) {}
};

// ---------------------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------------------
template <typename T, int FK, bool CLIP, bool INST>
void forward_kernel(const Shape& sh, const Options& o, const T* i_in, const T* m0, const T* f0,
                    const T* s0, const T* us0, const T* p, T* s_out, T* u_trace, T* f_trace,
                    T* s_trace, T* us_trace, T* mT, T* fT, T* sT, T* usT) {
  const int64_t N = sh.n, MN = sh.batch * sh.n;
  const int64_t nb = (N + kBlock - 1) / kBlock;
  at::parallel_for(0, sh.batch * nb, 1, [&](int64_t begin, int64_t end) {
    // locals, not captures: a captured reference may alias the stores and blocks vectorisation
    const T dt = T(o.dt), u_th = T(o.u_th), span = T(o.span), u_c = T(o.u_c);
    T um[kBlock], uf[kBlock], us[kBlock], uu[kBlock];
    T cf[kBlock], cs[kBlock], cu[kBlock];
    T scratch[kBlock];
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t m = blk / nb, n0 = (blk % nb) * kBlock, len = std::min(kBlock, N - n0);
      const int64_t c0 = m * N + n0;
      const ParamBlock<T> q(p, N, n0);
      const T *af = q.af, *asp = q.asp, *asm_ = q.asm_, *aus = q.aus, *df = q.df, *dsp = q.dsp, *dsm = q.dsm,
              *dus = q.dus, *taum = q.taum, *tauf = q.tauf, *taus = q.taus, *tauu = q.tauu, *res = q.res,
              *urest = q.urest;
      for (int64_t j = 0; j < len; ++j) {
        um[j] = m0[c0 + j]; uf[j] = f0[c0 + j]; us[j] = s0[c0 + j]; uu[j] = us0[c0 + j];
        cf[j] = INST ? T(1) : filter_const<T, FK>(tauf[j], dt);
        cs[j] = filter_const<T, FK>(taus[j], dt);
        cu[j] = filter_const<T, FK>(tauu[j], dt);
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
          const T m_ = um[j], s_ = us[j], u_ = uu[j];
          const T fr = INST ? m_ : uf[j];
          const T itot = -af[j] * std::tanh(fr - df[j]) + asp[j] * std::tanh(s_ - dsp[j]) +
                         -asm_[j] * std::tanh(s_ - dsm[j]) + aus[j] * std::tanh(u_ - dus[j]);
          const T rate = (-(m_ - urest[j]) + res[j] * (in[j] - itot)) / taum[j];
          const T mn = m_ + dt * rate;
          const T fn = INST ? mn : filter_update<T, FK>(m_, uf[j], cf[j], dt);
          const T sn = filter_update<T, FK>(m_, s_, cs[j], dt);
          const T un = filter_update<T, FK>(m_, u_, cu[j], dt);
          um[j] = mn; uf[j] = fn; us[j] = sn; uu[j] = un;
          so[j] = transduce<T, CLIP>(mn, u_th, span, u_c);
          ut[j] = mn; ft[j] = fn; st[j] = sn; ust[j] = un;
        }
      }
      for (int64_t j = 0; j < len; ++j) {
        mT[c0 + j] = um[j]; fT[c0 + j] = uf[j]; sT[c0 + j] = us[j]; usT[c0 + j] = uu[j];
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------------
// Backward (reverse-time adjoint of the forward above; derivation in mtc_analog/neuron/fused.py)
// ---------------------------------------------------------------------------------------------------
template <typename T, int FK, bool CLIP, bool INST>
void backward_kernel(const Shape& sh, const Options& o, const T* g_s, const T* g_u, const T* g_mT,
                     const T* g_fT, const T* g_sT, const T* g_usT, const T* i_in, const T* m0,
                     const T* f0, const T* s0, const T* us0, const T* p, const T* u_trace,
                     const T* f_trace, const T* s_trace, const T* us_trace, T* g_i, T* g_m0,
                     T* g_f0, T* g_s0, T* g_us0, T* g_p /* (N_ROWS, M, N) */) {
  const int64_t N = sh.n, MN = sh.batch * sh.n;
  const int64_t nb = (N + kBlock - 1) / kBlock;
  at::parallel_for(0, sh.batch * nb, 1, [&](int64_t begin, int64_t end) {
    // locals, not captures: a captured reference may alias the stores and blocks vectorisation
    const T dt = T(o.dt), u_th = T(o.u_th), span = T(o.span), u_c = T(o.u_c);
    T gm[kBlock], gf[kBlock], gs[kBlock], gu[kBlock];
    T cf[kBlock], cs[kBlock], cu[kBlock];
    T acc[N_ROWS][kBlock];
    T zeros[kBlock];
    std::fill(zeros, zeros + kBlock, T(0));
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t m = blk / nb, n0 = (blk % nb) * kBlock, len = std::min(kBlock, N - n0);
      const int64_t c0 = m * N + n0;
      const ParamBlock<T> q(p, N, n0);
      const T *af = q.af, *asp = q.asp, *asm_ = q.asm_, *aus = q.aus, *df = q.df, *dsp = q.dsp, *dsm = q.dsm,
              *dus = q.dus, *taum = q.taum, *tauf = q.tauf, *taus = q.taus, *tauu = q.tauu, *res = q.res,
              *urest = q.urest;
      for (int64_t j = 0; j < len; ++j) {
        gm[j] = g_mT ? g_mT[c0 + j] : T(0);
        gf[j] = g_fT ? g_fT[c0 + j] : T(0);
        gs[j] = g_sT ? g_sT[c0 + j] : T(0);
        gu[j] = g_usT ? g_usT[c0 + j] : T(0);
        cf[j] = INST ? T(1) : filter_const<T, FK>(tauf[j], dt);
        cs[j] = filter_const<T, FK>(taus[j], dt);
        cu[j] = filter_const<T, FK>(tauu[j], dt);
        for (int64_t r = 0; r < N_ROWS; ++r) acc[r][j] = T(0);
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
          const T m_ = pm[j], fr = pf[j], s_ = ps[j], u_ = pu[j];
          // adjoint of U_m after the step: from the next step, the output s, the trace, and (tau_f
          // = 0) the fast copy U_f = U_m
          T gmo = gm[j] + gso[j] * transduce_grad<T, CLIP>(mnew[j], u_th, span, u_c) + guo[j];
          if constexpr (INST) gmo += gf[j];
          const T th_f = std::tanh(fr - df[j]), th_sp = std::tanh(s_ - dsp[j]);
          const T th_sm = std::tanh(s_ - dsm[j]), th_us = std::tanh(u_ - dus[j]);
          const T itot = -af[j] * th_f + asp[j] * th_sp + -asm_[j] * th_sm + aus[j] * th_us;
          const T drive = in[j] - itot;
          const T rate = (-(m_ - urest[j]) + res[j] * drive) / taum[j];
          const T A = gmo * dt / taum[j];  // d loss / d (tau_m * rate) through U_m'
          const T AR = A * res[j];
          const T q_f = AR * af[j] * (T(1) - th_f * th_f);
          const T q_sp = AR * asp[j] * (T(1) - th_sp * th_sp);
          const T q_sm = AR * asm_[j] * (T(1) - th_sm * th_sm);
          const T q_us = AR * aus[j] * (T(1) - th_us * th_us);
          gi[j] = AR;
          acc[A_F][j] += AR * th_f;
          acc[A_SP][j] -= AR * th_sp;
          acc[A_SM][j] += AR * th_sm;
          acc[A_US][j] -= AR * th_us;
          acc[D_F][j] -= q_f;
          acc[D_SP][j] += q_sp;
          acc[D_SM][j] -= q_sm;
          acc[D_US][j] += q_us;
          acc[TAU_M][j] -= gmo * dt * rate / taum[j];
          acc[RES][j] += A * drive;
          acc[U_REST][j] += A;
          T gm_prev = gmo - A;
          T gf_prev = T(0);
          if constexpr (INST) {
            gm_prev += q_f;
          } else {
            const auto kf = filter_partials<T, FK>(m_, fr, cf[j], tauf[j], dt);
            gf_prev = q_f + gf[j] * kf.kx;
            gm_prev += gf[j] * (T(1) - kf.kx);
            acc[TAU_F][j] += gf[j] * kf.ktau;
          }
          const auto ks = filter_partials<T, FK>(m_, s_, cs[j], taus[j], dt);
          const auto ku = filter_partials<T, FK>(m_, u_, cu[j], tauu[j], dt);
          const T gs_prev = -q_sp + q_sm + gs[j] * ks.kx;
          const T gu_prev = -q_us + gu[j] * ku.kx;
          gm_prev += gs[j] * (T(1) - ks.kx) + gu[j] * (T(1) - ku.kx);
          acc[TAU_S][j] += gs[j] * ks.ktau;
          acc[TAU_US][j] += gu[j] * ku.ktau;
          gm[j] = gm_prev; gf[j] = gf_prev; gs[j] = gs_prev; gu[j] = gu_prev;
        }
      }
      for (int64_t j = 0; j < len; ++j) {
        g_m0[c0 + j] = gm[j]; g_f0[c0 + j] = gf[j]; g_s0[c0 + j] = gs[j]; g_us0[c0 + j] = gu[j];
        for (int64_t r = 0; r < N_ROWS; ++r) g_p[r * MN + c0 + j] = acc[r][j];
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------------
// Dispatch over the compile-time variants
// ---------------------------------------------------------------------------------------------------
template <typename Fn>
void dispatch_variant(int filter_kind, bool clip, bool inst, Fn&& fn) {
  auto with_inst = [&](auto fk, auto c) {
    if (inst) fn(fk, c, std::true_type{}); else fn(fk, c, std::false_type{});
  };
  auto with_clip = [&](auto fk) {
    if (clip) with_inst(fk, std::true_type{}); else with_inst(fk, std::false_type{});
  };
  switch (filter_kind) {
    case EULER_LINEAR: with_clip(std::integral_constant<int, EULER_LINEAR>{}); break;
    case EULER_OTA: with_clip(std::integral_constant<int, EULER_OTA>{}); break;
    case EXACT_LINEAR: with_clip(std::integral_constant<int, EXACT_LINEAR>{}); break;
    case EXACT_OTA: with_clip(std::integral_constant<int, EXACT_OTA>{}); break;
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
                     [&](auto fk, auto c, auto inst) {
      forward_kernel<T, decltype(fk)::value, decltype(c)::value, decltype(inst)::value>(
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
                     [&](auto fk, auto c, auto inst) {
      backward_kernel<T, decltype(fk)::value, decltype(c)::value, decltype(inst)::value>(
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
