"""Fused MTC rollout: the whole time loop, forward and hand-written backward, in one C++ call.

The math is :func:`mtc_analog.neuron.step.mtc_step` (itself derived from
:mod:`mtc_analog.neuron.equations`, the source of truth); ``csrc/mtc_fused.cpp`` is a compiled
transcription of it, checked against the reference loop by ``tests/test_fused.py`` (forward and
gradients, every method x filter x transduction, tau_f zero and non-zero). Per Euler step, for every
neuron column (batch element b, neuron n), with U_f read as U_m when tau_f = 0:

.. math::

    I_{tot} &= -a_f \\tanh(U_f - d_f) + a_{s+}\\tanh(U_s - d_{s+}) - a_{s-}\\tanh(U_s - d_{s-})
              + a_{us}\\tanh(U_{us} - d_{us})

    U_m' &= U_m + \\Delta t\\,\\big(-(U_m - U_{rest}) + R (I_{in}[t] - I_{tot})\\big)/\\tau_m

    U_x' &= \\phi(U_m, U_x; \\tau_x) \\quad x\\in\\{f, s, us\\} \\qquad (U_f' = U_m' \\text{ if } \\tau_f = 0)

    s[t] &= \\mathrm{clip}((U_m' - U_{th})/(U_{sat} - U_{th}), 0, 1)
           \\quad\\text{or}\\quad \\sigma(2 (U_m' - U_c))

with the filter update ``phi``: Euler linear ``U_x + dt (U_m - U_x)/tau``, Euler OTA
``U_x + dt tanh(U_m - U_x)/tau``, exact linear ``U_m + (U_x - U_m) e``, exact OTA
``U_m + asinh(sinh(U_x - U_m) e)``, ``e = exp(-dt/tau)``. Heun and RK4 step the whole state
X = (U_m, U_f, U_s, U_us) with the textbook stages ``k_i = f(X + dt sum_j a_ij k_j)`` of the RHS f
(:func:`mtc_analog.neuron.equations.rhs`, input held over the step).

Backward (reverse time, one adjoint per state variable, starting from the gradients of the final
state). The kernel writes the vector-Jacobian product of the RHS once (``rhs_vjp``: given w, it returns
``w^T df/dX`` and adds ``w^T df/dparams`` and ``w^T df/dI_in``) and composes it per method, the stages
recomputed from the stored step-start state X. With ``gb`` the adjoint of X' (U_m' also collects
``ds/dU_m' dL/ds[t]`` and the membrane trace's gradient; with tau_f = 0 the adjoint of U_f' = U_m' is
added to U_m's):

* Euler: ``gX = gb + vjp(X, dt gb)``;
* Heun: ``g2 = vjp(Y2, dt/2 gb)``, ``g1 = vjp(X, dt/2 gb + dt g2)``, ``gX = gb + g1 + g2``;
* RK4: ``g4 = vjp(Y4, dt/6 gb)``, ``g3 = vjp(Y3, dt/3 gb + dt g4)``, ``g2 = vjp(Y2, dt/3 gb + dt/2 g3)``,
  ``g1 = vjp(X, dt/6 gb + dt/2 g2)``, ``gX = gb + g1 + g2 + g3 + g4``;
* exact: the membrane row as Euler (``vjp(X, (dt gb_m, 0, 0, 0))``), each filter through its closed
  form: ``gX_x = gb_x k_x``, ``gX_m += gb_x (1 - k_x)``, ``dL/dtau_x += gb_x dU_x'/dtau_x`` with
  ``k_x = dU_x'/dU_x``.

Inside ``vjp``, with ``A = w_m/tau_m``, ``q_k = A R a_k (1 - tanh_k^2)``: ``dL/dI_in = A R``;
``dL/da_f += A R tanh_f``, ``dL/da_{s+} -= A R tanh_{s+}``, ``dL/da_{s-} += A R tanh_{s-}``,
``dL/da_{us} -= A R tanh_{us}``; ``dL/dd_f -= q_f``, ``dL/dd_{s+} += q_{s+}``, ``dL/dd_{s-} -= q_{s-}``,
``dL/dd_{us} += q_{us}``; ``dL/dtau_m -= w_m rate_m / tau_m``; ``dL/dR += A (I_in - I_tot)``;
``dL/dU_rest += A``; state ``m: -A (+ q_f if tau_f = 0)``, ``f: q_f``, ``s: -q_{s+} + q_{s-}``,
``us: -q_{us}``; each filter rate ``g(U_m - U_x)/tau_x`` adds ``w_x g'/tau_x`` to m, ``-w_x g'/tau_x``
to x and ``-w_x g/tau_x^2`` to tau_x.

Memory and loop order: each block of ~4 KiB of columns runs the whole time loop in 16-step
segments, and each segment chunk by chunk (256 bytes of consecutive (batch row, neuron) columns, 512
with AVX-512; a chunk may span rows, so small or odd layers still fill whole vectors): a chunk's
state, constants and accumulators stay in L1/L2 for the whole segment, and the pages of the time-major
arrays the segment touches stay in the TLB for all the block's chunks. When a gradient is needed the
forward stores the state only every 16 steps (checkpoints: 4 x T/16 x B x N values); the backward
recomputes each chunk's 16-step segment from its checkpoint into an L1-resident buffer (bit-identical
to the forward, keeping the four elements' tanh values for the adjoint) and runs the adjoint over it. Without a gradient nothing but the outputs (and the membrane trace, if
asked) is stored, so 240k-step regime simulations cost O(B N) extra memory. Outputs of 4 MiB and more
(s, the trace, the checkpoints, dL/dI) come from a cache of freed buffers: a fresh buffer costs ~1 ns
per element in page faults (a fifth of a large layer's training step), a recycled one nothing. The
cache keeps at most ``$MTC_ANALOG_BUFFER_CACHE_MB`` (default 1/8 of memory, at most 4 GiB; 0 turns
it off) and :func:`release_buffers` empties it. (Such outputs cannot be resized in place to a larger size,
like any tensor over foreign memory.)

Build: the extension is compiled by ``scripts/setup.sh`` (``python -m mtc_analog.neuron.fused``) or
else on first use, with one line on stderr ("compiling the MTC neuron kernel (once, ~1 min) into
DIR"), by :func:`torch.utils.cpp_extension.load` (needs g++ and ninja; about a minute of CPU) into
``$MTC_ANALOG_BUILD_DIR`` (default ``~/.cache/mtc_analog/torch_extensions``). The cache key hashes
everything that changes the build: source bytes, compiler flags and target ISA, compiler version,
torch version and install path, Python version and prefix; later processes only load the cached
library (an OS file lock serialises concurrent first uses and survives a killed build). It registers the custom ops
``torch.ops.mtc_analog.rollout_forward`` and ``rollout_backward``.

Determinism across machines: the kernel is compiled for a fixed instruction set, never
``-march=native``: the highest psABI level the CPU has -- ``x86-64-v4`` (AVX-512, 512-bit vectors:
1.4-1.6x faster), ``x86-64-v3`` (AVX2 + FMA + BMI, every x86-64 CPU since ~2015), ``x86-64-v2`` or
baseline ``x86-64`` -- or the one ``$MTC_ANALOG_KERNEL_ISA`` names (each a separate, separately
cached build), and ``-ffp-contract=off`` (no compiler-chosen FMAs). Every lane computes the same
IEEE operation sequence whatever the vector width, so builds of different levels give bit-identical
float32 results wherever no libm/libmvec function is called (clip transduction with Euler, Heun or
RK4 and either filter: the training defaults; a test builds this CPU's level and the one below and
compares them bit for bit); where one is
(float64 tanh, sigmoid, exact OTA filters) each level calls its own libmvec variant, whose last bits
may differ. On x86-64 with glibc >= 2.35 the float64 loops call libmvec's SIMD
tanh/exp/sinh (and the float32 loops its exp/sinh); the vector variant is fixed by the ISA at compile
time, and glibc selects the same implementation of it on every CPU of that level. float32 tanh is a
rational approximation in plain arithmetic with explicit (correctly rounded) fma (max error 3.4e-7), and float32 divides by tau through
per-neuron reciprocals: both faster and CPU-independent; float64 keeps libm's tanh and true
divisions so that it matches the reference loop to rounding. So one build (same source, compiler, flags
and level) gives bit-identical numbers on any machine of its level. Rows of columns are
independent and the per-parameter sums over the batch run in a fixed order, so the thread count does
not change a bit either. (torch's own ops outside the kernel pick their SIMD path per CPU; pin them
with ``ATEN_CPU_CAPABILITY=avx2`` where bit-identical training runs across CPUs matter.)
If it cannot be built, :func:`available` warns once with the reason and the caller falls back to the
reference loop, except when the environment variable ``CI`` is ``"true"``: then it raises
:class:`FusedKernelError` so that a broken kernel cannot hide behind the fallback.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from ..errors import MTCAnalogError
from .equations import FILTERS, MTCParameters, MTCState
from .step import METHODS, TRANSDUCTIONS, Rollout, Transduction

#: Order of the rows of the stacked per-neuron parameter tensor handed to the kernel.
PARAM_ORDER: tuple[str, ...] = (
    "a_f", "a_s_plus", "a_s_minus", "a_us", "d_f", "d_s_plus", "d_s_minus", "d_us",
    "tau_m", "tau_f", "tau_s", "tau_us", "resistance", "u_rest",
)
SUPPORTED_DTYPES = (torch.float32, torch.float64)
#: Integration methods the compiled kernel implements (``auto`` falls back to the reference for others).
KERNEL_METHODS: tuple[str, ...] = METHODS
_SOURCE = Path(__file__).resolve().parent.parent / "csrc" / "mtc_fused.cpp"


def _libmvec() -> bool:
    """glibc >= 2.35 on x86-64 ships libmvec (SIMD tanh/exp/sinh/...): the kernel vectorises with it."""
    import ctypes.util

    try:  # the running glibc (platform.libc_ver() reports what the interpreter was linked against)
        libc, version = os.confstr("CS_GNU_LIBC_VERSION").split()
        major, minor = (int(v) for v in version.split(".")[:2])
    except (AttributeError, ValueError, OSError):
        return False
    if platform.machine() != "x86_64" or libc != "glibc":
        return False
    return (major, minor) >= (2, 35) and ctypes.util.find_library("mvec") is not None


_USE_LIBMVEC = _libmvec()

# x86-64 micro-architecture levels (the psABI's): the flags /proc/cpuinfo must show for each.
_V2 = frozenset("cx16 lahf_lm popcnt sse4_1 sse4_2 ssse3".split())
_V3 = _V2 | frozenset("avx avx2 bmi1 bmi2 f16c fma abm movbe xsave".split())
_X86_LEVELS: tuple[tuple[str, frozenset[str]], ...] = (
    ("x86-64-v4", _V3 | frozenset("avx512f avx512bw avx512cd avx512dq avx512vl".split())),
    ("x86-64-v3", _V3),
    ("x86-64-v2", _V2),
)


def _cpu_flags() -> set[str] | None:
    try:
        line = next(l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags"))
        return set(line.split(":", 1)[1].split())
    except (OSError, StopIteration, IndexError):
        return None


#: Environment variable that pins the kernel's instruction set (one of the x86-64 levels), e.g.
#: ``x86-64-v3`` on an AVX-512 machine for float64 results bit-identical to AVX2-only machines.
ISA_ENV = "MTC_ANALOG_KERNEL_ISA"


def target_isa() -> str:
    """The fixed instruction set the kernel is compiled for: the highest x86-64 psABI level the CPU
    has (``x86-64-v4``: AVX-512, ``x86-64-v3``: AVX2 + FMA, ``x86-64-v2``, baseline ``x86-64``), or
    the one ``$MTC_ANALOG_KERNEL_ISA`` names (ValueError when it is no level or one the CPU lacks);
    ``native`` off x86-64 (one build per CPU)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return "native"
    flags = _cpu_flags()
    supported = [level for level, needed in _X86_LEVELS if flags is not None and needed <= flags] + ["x86-64"]
    requested = os.environ.get(ISA_ENV, "").strip()
    if requested:
        if requested not in supported:
            known = [level for level, _ in _X86_LEVELS] + ["x86-64"]
            why = "is not an x86-64 level" if requested not in known else "is not supported by this CPU"
            raise ValueError(f"${ISA_ENV}={requested} {why} (this CPU: {', '.join(supported)})")
        return requested
    return supported[0]


try:
    _ISA, _ISA_PROBLEM = target_isa(), None
except ValueError as _exc:  # reported when the kernel is first needed (FusedKernelError), not at import
    _ISA, _ISA_PROBLEM = "x86-64", str(_exc)
# -march=<fixed level>, not native: the same source then compiles to the same binary on every CPU of
# that level, and libmvec's vector variant (AVX-512 'e' on v4, AVX2 'd' on v3, SSE 'b' below) is chosen
# at compile time, so results do not depend on the machine within a level. Across levels float32
# results are bit-identical wherever the kernel calls no libmvec function (tested v3 against v4).
# -ffp-contract=off: no fused multiply-add contraction either, so the arithmetic is the plain IEEE
# sequence of the source (as the reference's). -fno-trapping-math: lets the vectoriser compute both
# arms of a select (no FP traps are enabled; results are unchanged). -fopenmp: at::parallel_for only runs in parallel when
# compiled with OpenMP (the libgomp that torch already loaded is reused: same soname). No -ffast-math:
# it would change NaN handling and rounding.
# x86-64-v4: 512-bit vectors (GCC's default for this level is 256; the kernel's rows are 16 floats
# wide there, measured 1.4-1.6x faster than the v3 build on the same CPU).
_CFLAGS = ["-O3", f"-march={_ISA}", "-ffp-contract=off", "-fno-trapping-math", "-fopenmp", "-fno-math-errno"] + (
    ["-mprefer-vector-width=512"] if _ISA == "x86-64-v4" else []) + (["-DMTC_USE_LIBMVEC"] if _USE_LIBMVEC else [])
_LDFLAGS = ["-fopenmp"] + (["-lmvec"] if _USE_LIBMVEC else [])

#: How many rollouts ran through the fused kernel in this process (tests use it to check dispatch).
CALLS = 0


class FusedKernelError(MTCAnalogError, RuntimeError):
    """The fused C++ MTC kernel could not be built or cannot run these inputs."""


def _single_thread_after_fork() -> None:
    """libgomp is not fork-safe: a child forked after the parent ran an OpenMP region hangs in its
    next parallel region (torch's own ops too). One intra-op thread keeps at::parallel_for serial."""
    torch.set_num_threads(1)


# Children forked once this module is loaded (multiprocessing's default on Linux) run single-threaded
# instead of hanging; "spawn"/"forkserver" children are unaffected and keep torch's default.
os.register_at_fork(after_in_child=_single_thread_after_fork)

_lock = threading.Lock()
_module: Any = None
_failure: str | None = None
_warned = False


def build_dir() -> Path:
    """Where the compiled extension is cached: ``$MTC_ANALOG_BUILD_DIR`` or ~/.cache/mtc_analog/..."""
    root = os.environ.get("MTC_ANALOG_BUILD_DIR")
    return Path(root) if root else Path.home() / ".cache" / "mtc_analog" / "torch_extensions"


def _compiler_version() -> str:
    """First line of the C++ compiler's --version (the one torch.utils.cpp_extension will call)."""
    import subprocess

    compiler = os.environ.get("CXX", "c++")
    try:
        out = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return compiler + " (unavailable)"
    return compiler + ": " + (out.splitlines()[0] if out else "")


def _build_name() -> str:
    """Cache key: everything that changes the built library (source bytes, flags and ISA, compiler,
    torch version and install path, Python version and installation), so that another checkout or
    venv neither reuses a library built against a different torch nor rebuilds one it can share."""
    digest = hashlib.sha256()
    for part in (_SOURCE.read_bytes(), " ".join(_CFLAGS + _LDFLAGS).encode(), _ISA.encode(), platform.machine().encode(),
                 _compiler_version().encode(), torch.__version__.encode(), str(Path(torch.__file__).resolve().parent).encode(),
                 platform.python_version().encode(), sys.prefix.encode(), sys.base_prefix.encode()):
        digest.update(part)
        digest.update(b"\0")
    return "mtc_fused_" + digest.hexdigest()[:16]


def _library(directory: Path, name: str) -> Path:
    return directory / f"{name}.so"


def _load() -> Any:
    from torch.utils import cpp_extension

    if not cpp_extension.is_ninja_available():
        raise FusedKernelError(
            "ninja is not installed (torch.utils.cpp_extension needs it): install it with "
            "`apt-get install ninja-build` or `pip install ninja`"
        )
    from filelock import FileLock

    if _ISA_PROBLEM is not None:
        raise FusedKernelError(f"{_ISA_PROBLEM}; unset it or name a level this CPU has")
    name = _build_name()
    directory = build_dir() / name
    directory.mkdir(parents=True, exist_ok=True)
    # An OS-level lock (released when its holder dies, unlike torch's own `lock` file, which a build
    # killed midway leaves behind and every later process then waits on for ever). Holding it, no
    # process of ours is building here, so a leftover torch lock file is stale and can go.
    with FileLock(str(directory / ".mtc_build.flock")):
        stale = directory / "lock"
        if stale.exists():
            stale.unlink()
        # Build from a copy inside the cache directory: every checkout with the same source bytes (the
        # key) then hands ninja the same path, so one checkout does not rebuild another's library.
        source = directory / _SOURCE.name
        if not source.exists() or source.read_bytes() != _SOURCE.read_bytes():
            source.write_bytes(_SOURCE.read_bytes())
        if not _library(directory, name).exists():  # say so before the minute of silence (not inside a batch)
            print(f"compiling the MTC neuron kernel (once, ~1 min) into {directory}", file=sys.stderr, flush=True)
        cpp_extension.load(  # copies of the flag lists: load() appends to them in place
            name=name, sources=[str(source)], extra_cflags=list(_CFLAGS), extra_ldflags=list(_LDFLAGS),
            build_directory=str(directory), verbose=False, is_python_module=False,
        )
    torch.ops.mtc_analog.set_buffer_cache(_buffer_cache_limit())
    return torch.ops.mtc_analog


#: Environment variable: how many MiB of freed large buffers the kernel keeps for reuse (0: none).
BUFFER_CACHE_ENV = "MTC_ANALOG_BUFFER_CACHE_MB"
#: Default: 1/8 of the machine's memory, at most 4 GiB.
_DEFAULT_CACHE_FRACTION, _DEFAULT_CACHE_MAX = 8, 4 << 30


def _buffer_cache_limit() -> int:
    """Bytes of freed output buffers (>= 4 MiB each) the kernel may keep: ``$MTC_ANALOG_BUFFER_CACHE_MB``
    or 1/8 of physical memory (at most 4 GiB). Reusing them saves the page faults of a fresh buffer
    (~1 ns per element: as much as a fifth of a training step of a large layer)."""
    value = os.environ.get(BUFFER_CACHE_ENV, "").strip()
    if value:
        try:
            mib = float(value)
        except ValueError:
            mib = float("nan")
        if not mib >= 0 or mib == float("inf"):
            raise FusedKernelError(f"${BUFFER_CACHE_ENV}={value!r} must be a number of MiB >= 0 (0 turns the cache off)")
        return int(mib * (1 << 20))
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return min(_DEFAULT_CACHE_MAX, total // _DEFAULT_CACHE_FRACTION)


def release_buffers() -> int:
    """Free the large buffers the kernel keeps for reuse (the memory of earlier calls' outputs once
    they were freed); later calls start caching again. Returns the bytes freed (0 when not loaded)."""
    if _module is None:
        return 0
    freed = int(_module.set_buffer_cache(0))
    _module.set_buffer_cache(_buffer_cache_limit())
    return freed


def is_built() -> bool:
    """True when this configuration's library is already in the cache (nothing is built)."""
    name = _build_name()
    return _library(build_dir() / name, name).exists()


def _describe_failure(exc: Exception) -> str:
    """One readable reason: the compiler's first error lines rather than ninja's last words."""
    if isinstance(exc, FusedKernelError):
        return str(exc)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() and not line.startswith("RuntimeError")]
    detail = "; ".join(errors[:3]) if errors else (lines[-1] if lines else repr(exc))
    return f"{type(exc).__name__}: {detail} (build directory {build_dir()}; needs g++ and ninja)"


def extension() -> Any:
    """The compiled kernel's op namespace ``torch.ops.mtc_analog`` (built on first call).

    Raises :class:`FusedKernelError` when it cannot be built or loaded.
    """
    global _module, _failure
    with _lock:
        if _module is None and _failure is None:
            try:
                _module = _load()
            except Exception as exc:  # compiler missing, build error, load error: all mean "no kernel"
                _failure = _describe_failure(exc)
    if _module is None:
        raise FusedKernelError(f"the fused MTC kernel could not be built: {_failure}")
    return _module


def available() -> bool:
    """True when the kernel is built (building it now if needed).

    On failure: warns once and returns False, or raises :class:`FusedKernelError` when ``CI=true``.
    """
    global _warned
    try:
        extension()
        return True
    except FusedKernelError as exc:
        if os.environ.get("CI") == "true":
            raise
        if not _warned:
            _warned = True
            warnings.warn(f"{exc}; falling back to the (slower) reference loop", RuntimeWarning, stacklevel=3)
        return False


# -------------------------------------------------------------------------------------------------
# Input checks and packing
# -------------------------------------------------------------------------------------------------
def _is_zero_everywhere(value: Any) -> bool:
    return bool((torch.as_tensor(value) == 0).all())


def _per_neuron_ok(value: Any, n: int) -> bool:
    shape = tuple(torch.as_tensor(value).shape) if not isinstance(value, torch.Tensor) else tuple(value.shape)
    if all(d == 1 for d in shape):
        return True
    return shape[-1] == n and all(d == 1 for d in shape[:-1])


def unsupported_reason(i_in: torch.Tensor, params: MTCParameters, state: MTCState | None) -> str | None:
    """Why the fused kernel cannot run these inputs (None when it can)."""
    if not isinstance(i_in, torch.Tensor) or i_in.dim() < 2:
        return "the input must be a tensor of shape (T, ..., N)"
    if i_in.device.type != "cpu":
        return f"the input is on {i_in.device}; the fused kernel is CPU-only"
    if i_in.dtype not in SUPPORTED_DTYPES:
        return f"dtype {i_in.dtype} is not float32/float64"
    n = i_in.shape[-1]
    tensors = [v for v in params if isinstance(v, torch.Tensor)]
    if state is not None:
        tensors += [v for v in state if isinstance(v, torch.Tensor)]
    for tensor in tensors:
        if tensor.device.type != "cpu":
            return f"a parameter or state tensor is on {tensor.device}"
        if not tensor.dtype.is_floating_point and tensor.dtype != torch.int64:
            return f"a parameter or state tensor has dtype {tensor.dtype}"
    for name in PARAM_ORDER:
        if not _per_neuron_ok(getattr(params, name), n):
            return f"parameter {name} has shape {tuple(torch.as_tensor(getattr(params, name)).shape)}; expected a scalar or ({n},)"
    tau_f = torch.as_tensor(params.tau_f)
    if not _is_zero_everywhere(tau_f) and bool((tau_f == 0).any()):
        return "tau_f is zero for some neurons and not for others"
    if state is not None:
        for name, value in zip(MTCState._fields, state):
            try:
                torch.broadcast_shapes(torch.as_tensor(value).shape, i_in.shape[1:])
                broadcast = torch.broadcast_shapes(torch.as_tensor(value).shape, i_in.shape[1:])
            except RuntimeError:
                return f"state {name} does not broadcast to the input's {tuple(i_in.shape[1:])}"
            if broadcast != i_in.shape[1:]:
                return f"state {name} of shape {tuple(torch.as_tensor(value).shape)} would enlarge the batch"
    return None


def supports(i_in: torch.Tensor, params: MTCParameters, state: MTCState | None = None) -> bool:
    """True when the fused kernel can run these inputs (does not build anything)."""
    return unsupported_reason(i_in, params, state) is None


def _as_param(value: Any, n: int, like: torch.Tensor) -> torch.Tensor:
    tensor = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if tensor.dtype != like.dtype:
        tensor = tensor.to(like.dtype)
    return tensor.reshape(-1).expand(n) if tensor.numel() == 1 else tensor.reshape(n)


def _filter_kind(method: str, filter: str) -> int:
    return METHODS.index(method) * 2 + FILTERS.index(filter)


class _FusedRollout(torch.autograd.Function):
    """Autograd wrapper: inputs already packed (i_in (T,M,N), states (M,N), params (P,N))."""

    @staticmethod
    def forward(ctx, i_in, u_m, u_f, u_s, u_us, params, config, record_membrane=True):  # type: ignore[override]
        ext = extension()
        s, u_trace, checkpoints, m_t, f_t, s_t, us_t = ext.rollout_forward(
            i_in, [u_m, u_f, u_s, u_us], params, *config, record_membrane, True
        )
        ctx.config = config
        ctx.save_for_backward(i_in, u_m, u_f, u_s, u_us, params, checkpoints)
        ctx.set_materialize_grads(False)
        return s, u_trace, m_t, f_t, s_t, us_t

    @staticmethod
    @once_differentiable
    def backward(ctx, g_s, g_u, g_mt, g_ft, g_st, g_ust):  # type: ignore[override]
        i_in, u_m, u_f, u_s, u_us, params, checkpoints = ctx.saved_tensors

        def dense(g):  # autograd may hand in expanded (stride-0) gradients
            return None if g is None else g.contiguous()

        def dense_or_scalar(g):  # the gradient of a sum: one value broadcast (no T x M x N copy)
            if g is not None and g.numel() > 1 and all(stride == 0 for stride in g.stride()):
                return g.as_strided((1,), (1,)).contiguous()
            return None if g is None or g.numel() == 0 else g.contiguous()

        g_i, g_m0, g_f0, g_s0, g_us0, g_p = extension().rollout_backward(
            dense_or_scalar(g_s), dense_or_scalar(g_u), dense(g_mt), dense(g_ft), dense(g_st), dense(g_ust),
            i_in, [u_m, u_f, u_s, u_us], params, checkpoints, *ctx.config,
        )
        return g_i, g_m0, g_f0, g_s0, g_us0, g_p, None, None


def fused_rollout(
    i_in: torch.Tensor,
    params: MTCParameters,
    dt: float,
    state: MTCState | None = None,
    method: str = "euler",
    filter: str = "linear",
    transduction: Transduction = Transduction(),
    record_membrane: bool = False,
) -> Rollout:
    """:func:`mtc_analog.neuron.step.mtc_rollout` through the fused kernel (same arguments and result).

    Parameters may be scalars or per-neuron tensors of shape (N,); gradients flow to ``i_in``, every
    parameter tensor that requires grad, and the initial state. Raises :class:`FusedKernelError` when
    the kernel is unavailable or the inputs are unsupported (see :func:`unsupported_reason`).
    """
    global CALLS
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: expected one of {METHODS}")
    if filter not in FILTERS:
        raise ValueError(f"unknown filter {filter!r}: expected one of {FILTERS}")
    if method not in KERNEL_METHODS:
        raise FusedKernelError(f"the fused kernel does not implement method {method!r} (it has {KERNEL_METHODS}); "
                               "use backend='reference'")
    transduction = Transduction(*transduction)
    if transduction.kind not in TRANSDUCTIONS:
        raise ValueError(f"unknown transduction {transduction.kind!r}: expected one of {TRANSDUCTIONS}")
    reason = unsupported_reason(i_in, params, state)
    if reason is not None:
        raise FusedKernelError(f"fused MTC rollout cannot run these inputs: {reason}; use backend='reference'")
    ext = extension()
    steps, batch_shape, n = i_in.shape[0], tuple(i_in.shape[1:-1]), i_in.shape[-1]
    m = 1
    for d in batch_shape:
        m *= d
    x = i_in.reshape(steps, m, n).contiguous()
    packed = torch.stack([_as_param(getattr(params, name), n, x) for name in PARAM_ORDER]).contiguous()
    if state is None:  # every variable at U_rest, as the reference
        states = [packed[PARAM_ORDER.index("u_rest")].expand(m, n).contiguous()] * 4
    else:
        states = [torch.as_tensor(v, dtype=x.dtype).expand(*batch_shape, n).reshape(m, n).contiguous() for v in state]
    instantaneous = _is_zero_everywhere(params.tau_f)
    config = (float(dt), _filter_kind(method, filter), transduction.kind == "clip", float(transduction.u_th),
              float(transduction.u_sat), float(transduction.u_c), instantaneous)
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or packed.requires_grad or any(s.requires_grad for s in states)
    )
    CALLS += 1
    if needs_grad:
        s, u_trace, m_t, f_t, s_t, us_t = _FusedRollout.apply(x, *states, packed, config, record_membrane)
    else:
        s, u_trace, _, m_t, f_t, s_t, us_t = ext.rollout_forward(
            x, states, packed, *config, record_membrane, False
        )
    out_shape = (steps, *batch_shape, n)
    final = MTCState(*(v.reshape(*batch_shape, n) for v in (m_t, f_t, s_t, us_t)))
    u_m = u_trace.reshape(out_shape) if record_membrane else None
    return Rollout(s.reshape(out_shape), u_m, final)


if __name__ == "__main__":  # `python -m mtc_analog.neuron.fused [--check]`: build (or find) the kernel now
    if sys.argv[1:] == ["--check"]:  # exit 0 when built, 1 when a build is needed (builds nothing)
        raise SystemExit(0 if is_built() else 1)
    try:
        extension()
    except FusedKernelError as error:
        print(error, file=sys.stderr)
        raise SystemExit(1) from None
    print(f"fused MTC kernel ready: {build_dir() / _build_name()}")
