// The fused MTC kernel alone (no torch, no Python): forward with checkpoints + backward of
// loss = sum(s), float32, one thread, default layer configuration (clip transduction, linear filters,
// tau_f = 0). Prints CPU ns per neuron-step and a checksum of every gradient (FNV hash of the bytes),
// so two versions of the kernel can be compared bit for bit, and runs in a second under callgrind:
//
//   g++ -O3 -march=x86-64-v3 -ffp-contract=off -fno-trapping-math -fno-math-errno -DMTC_STANDALONE \
//       -o /tmp/kernel_micro benchmarks/kernel_micro.cpp
//   /tmp/kernel_micro euler 300 256 5            # method T N repeats (batch 64)
//   valgrind --tool=callgrind --toggle-collect='*timed_backward*' /tmp/kernel_micro euler 32 256 1
// The AVX-512 build the package makes on a v4 CPU: -march=x86-64-v4 -mprefer-vector-width=512 (valgrind
// 3.19 cannot run it); its hashes equal the v3 build's (the float32 path calls no libm function).
#include "../mtc_analog/csrc/mtc_fused.cpp"

#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>
#include <string>

namespace {

double thread_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

uint64_t fnv(const std::vector<float>& v, uint64_t h = 1469598103934665603ull) {
  const unsigned char* b = reinterpret_cast<const unsigned char*>(v.data());
  for (size_t i = 0; i < v.size() * sizeof(float); ++i) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

// Not inlined, so that callgrind can count each pass alone: --toggle-collect='*timed_forward*'.
template <int METHOD>
__attribute__((noinline)) void timed_forward(const Shape& sh, const Options& o, const float* x, const float* zero,
                                             const float* p, float* s, float* ckpt, float* mT, float* fT, float* sT,
                                             float* uT) {
  forward_kernel<float, METHOD, false, true, true>(sh, o, x, zero, zero, zero, zero, p, s, nullptr, ckpt, mT, fT, sT, uT);
}

template <int METHOD>
__attribute__((noinline)) void timed_backward(const Shape& sh, const Options& o, const float* one, const float* x,
                                              const float* p, const float* ckpt, float* gi, float* gm, float* gf,
                                              float* gs, float* gu, float* gp) {
  backward_kernel<float, METHOD, false, true, true>(sh, o, OutGrad<float>{one, true}, OutGrad<float>{nullptr, false},
                                                    nullptr, nullptr, nullptr, nullptr, x, p, ckpt, gi, gm, gf, gs,
                                                    gu, gp);
}

template <int METHOD>
void run(int64_t steps, int64_t N, int reps) {
  const int64_t M = 64, MN = M * N, nseg = (steps + kSeg - 1) / kSeg;
  std::mt19937 gen(0);
  std::normal_distribution<float> normal(0.5f, 1.5f);
  std::vector<float> x(steps * MN), p(N_ROWS * N), zero(MN, 0.0f);
  for (auto& v : x) v = normal(gen);
  const float defaults[N_ROWS] = {2, 2, 0.05f, 0.2f, 0, 0, 0, 0, 1, 0, 50, 2500, 1, 0};
  std::uniform_real_distribution<float> jitter(-0.1f, 0.1f);
  for (int64_t r = 0; r < N_ROWS; ++r)
    for (int64_t n = 0; n < N; ++n) p[r * N + n] = defaults[r] + (r < 8 ? jitter(gen) : 0.0f);
  const Shape sh{steps, M, N};
  const Options o{METHOD == RK4 ? 0.5 : 0.25, 0.5, 1.0, 1.0};
  std::vector<float> s(steps * MN), ckpt(nseg * 4 * MN), mT(MN), fT(MN), sT(MN), uT(MN);
  std::vector<float> gi(steps * MN), gm(MN), gf(MN), gs(MN), gu(MN), gp(N_ROWS * MN);
  const float one = 1.0f;
  double fwd = 1e30, bwd = 1e30;
  for (int rep = 0; rep < reps; ++rep) {
    const double t0 = thread_seconds();
    timed_forward<METHOD>(sh, o, x.data(), zero.data(), p.data(), s.data(), ckpt.data(), mT.data(), fT.data(),
                          sT.data(), uT.data());
    const double t1 = thread_seconds();
    timed_backward<METHOD>(sh, o, &one, x.data(), p.data(), ckpt.data(), gi.data(), gm.data(), gf.data(), gs.data(),
                           gu.data(), gp.data());
    const double t2 = thread_seconds();
    fwd = std::min(fwd, t1 - t0);
    bwd = std::min(bwd, t2 - t1);
  }
  const double ns = 1e9 / double(steps * MN);
  uint64_t h = fnv(s);
  h = fnv(gi, h); h = fnv(gm, h); h = fnv(gs, h); h = fnv(gu, h); h = fnv(gp, h);
  std::printf("%s T %lld N %lld B 64: fwd %.2f ns, bwd %.2f ns, fwd+bwd %.2f ns per neuron-step (min of %d); hash %016llx\n",
              METHOD == RK4 ? "rk4" : "euler", (long long)steps, (long long)N, fwd * ns, bwd * ns, (fwd + bwd) * ns,
              reps, (unsigned long long)h);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string method = argc > 1 ? argv[1] : "euler";
  const int64_t steps = argc > 2 ? std::stoll(argv[2]) : 300, N = argc > 3 ? std::stoll(argv[3]) : 256;
  const int reps = argc > 4 ? std::stoi(argv[4]) : 3;
  if (method == "rk4") run<RK4>(steps, N, reps);
  else run<EULER>(steps, N, reps);
  return 0;
}
