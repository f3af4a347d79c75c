"""Typed, actionable errors. Each says what failed, where, the limit, and how to fix it.

The CLI turns any :class:`MTCAnalogError` into one line on stderr and a non-zero exit code.
"""

from __future__ import annotations


class MTCAnalogError(Exception):
    """Base class of every error the toolkit raises on purpose (user-facing)."""

    exit_code = 2


class InputError(MTCAnalogError, ValueError):
    """Bad user input: wrong shape, NaN/Inf, unknown option, horizon too long, ..."""


class CheckpointError(MTCAnalogError):
    """A checkpoint file is missing, truncated, foreign or inconsistent."""


class OutputExistsError(MTCAnalogError):
    """The output directory already holds results; pass --force to overwrite them."""


class FileSystemError(MTCAnalogError, OSError):
    """A file or directory cannot be written or read (read-only, disk full, a file where a directory
    should be, ...). The message names the path, what the error number means, and how to proceed."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        MTCAnalogError.__init__(self, message)
        self.errno_code = errno

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class OutputLockedError(MTCAnalogError):
    """Another process is writing the same output directory (its pid, command and start time are said)."""


class InsufficientMemoryError(MTCAnalogError, MemoryError):
    """A run would need more memory than the machine has available; the estimate and the limit are said."""


class HardwareRangeError(MTCAnalogError):
    """Mapped circuit values break the target's limits. ``violations`` lists every one."""

    def __init__(self, violations: list, message: str | None = None) -> None:
        self.violations = list(violations)
        head = message or f"{len(self.violations)} mapped value(s) outside the hardware target's range"
        lines = [head] + [f"  - {v}" for v in self.violations[:20]]
        if len(self.violations) > 20:
            lines.append(f"  ... and {len(self.violations) - 20} more")
        lines.append("  fix: retrain with tighter constraints, change the target (I_u, t_u, limits), or pass --clip")
        super().__init__("\n".join(lines))


class NetlistValueError(MTCAnalogError, ValueError):
    """A name or value would not be safe or valid inside a SPICE netlist."""


class UnsafeNetlistError(NetlistValueError):
    """A netlist would make ngspice run a command or load code (a .control block, ``*#``, an unknown dot-command)."""


class SimulatorMissingError(MTCAnalogError):
    """ngspice (binary or shared library) is not installed."""


class SimulationError(MTCAnalogError):
    """ngspice failed (crash, abort, no convergence). Carries the netlist path and the log tail."""

    def __init__(self, message: str, netlist: str | None = None, log_tail: str = "", tried: list[str] | None = None) -> None:
        self.netlist, self.log_tail, self.tried = netlist, log_tail, list(tried or [])
        parts = [message]
        if netlist:
            parts.append(f"netlist: {netlist}")
        if self.tried:
            parts.append("tried: " + "; ".join(self.tried))
        if log_tail:
            parts.append("ngspice log tail:\n" + log_tail)
        super().__init__("\n".join(parts))


class ValidationFailed(MTCAnalogError):
    """Circuit-versus-model validation ran but did not meet its pass thresholds."""

    exit_code = 3
