"""The subcircuit library: documented, parsed by plain ngspice, and the neuron generated from ELEMENTS."""

from __future__ import annotations

import re
import subprocess

import pytest

from mtc_analog.neuron.equations import ELEMENTS
from mtc_analog.spice import behavioral
from mtc_analog.spice.library import NETLIST_DIR

LIB_FILES = sorted((NETLIST_DIR / "behavioral").glob("*.lib"))


def test_library_files_exist():
    names = {p.name for p in LIB_FILES}
    assert {"ota_element.lib", "follower_integrator.lib", "transduction.lib", "synapse.lib", "readout.lib",
            "mtc_neuron.lib"} <= names


@pytest.mark.parametrize("path", LIB_FILES, ids=lambda p: p.name)
def test_each_file_says_what_it_models_and_units(path):
    head = "\n".join(line for line in path.read_text().splitlines()[:12] if line.startswith("*")).lower()
    assert "model" in head
    assert "unit" in head or "[a]" in head or "[v]" in head


def test_checked_in_neuron_library_matches_generator():
    # The neuron subcircuit is derived from ELEMENTS; the file in netlists/ must not drift from it.
    assert behavioral.neuron_library_path().read_text() == behavioral.render_neuron_library(), (
        "netlists/behavioral/mtc_neuron.lib is stale: regenerate with "
        "python -c 'from mtc_analog.spice.behavioral import *; neuron_library_path().write_text(render_neuron_library())'"
    )


@pytest.mark.parametrize("kind", ["linear", "ota"])
@pytest.mark.parametrize("fast", [True, False])
def test_neuron_elements_follow_equations(kind, fast):
    text = behavioral.neuron_subckt(kind, fast)
    for element in ELEMENTS:
        line = next(l for l in text.splitlines() if l.startswith(f"X_{element.name} "))
        _, out, reads, sub = line.split()[:4]
        assert out == "m"
        assert reads == {"u_f": "f" if fast else "m", "u_s": "s", "u_us": "us"}[element.variable]
        # sign -1 (negative conductance): the filtered node is the + input; sign +1: the reference is
        assert sub == ("ota_vref_plus" if element.sign < 0 else "ota_vref_minus")
        assert f"ib={{ib_{element.name}}}" in line and f"vref={{vref_{element.name}}}" in line
    assert f"filter_{kind}" in text
    assert ("X_filt_fast" in text) == fast


def test_plain_ngspice_parses_the_whole_library(tmp_path):
    lib = behavioral.TARGET.library({"mtc_neuron_linear", "mtc_neuron_ota_nofast"})
    netlist = tmp_path / "lib.cir"
    netlist.write_text("* library parse check\n" + lib + "V1 a 0 0.9\nR1 a 0 1k\n.tran 1u 2u\n.control\nrun\nquit 0\n.endc\n.end\n")
    proc = subprocess.run(["ngspice", "-b", str(netlist)], capture_output=True, text=True, timeout=60)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert not re.search(r"\berror\b", log, re.I), log


def test_targets_are_pluggable_modules():
    from mtc_analog.errors import InputError
    from mtc_analog.spice.target import TARGETS, CircuitTarget, get_target

    target = get_target("behavioral")
    for method in [m for m in vars(CircuitTarget) if not m.startswith("_") and callable(getattr(CircuitTarget, m))]:
        assert callable(getattr(target, method)), method  # everything the builder may call
    assert TARGETS["behavioral"] == "mtc_analog.spice.behavioral"
    with pytest.raises(InputError, match="behavioral"):
        get_target("sky130_not_yet")


def test_every_subcircuit_is_defined_once_and_lowpass_reuses_filter_linear():
    names = [m.group(1).lower() for path in LIB_FILES
             for m in re.finditer(r"^\.subckt\s+(\S+)", path.read_text(), re.M | re.I)]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    assert "lowpass_stage" not in names

    class Stage:
        capacitance, bias_current, kind = 1e-12, 1e-9, "linear"

    line = behavioral.TARGET.lowpass_lines("0_1", "ro0", "lp0_1", Stage(), 0.0738)[0]
    assert line.split()[3] == "filter_linear"
    Stage.kind = "ota"
    assert behavioral.TARGET.lowpass_lines("0_1", "ro0", "lp0_1", Stage(), 0.0738)[0].split()[3] == "filter_ota"
