"""A netlist from someone else never runs a command: a corpus of control-block variants (indentation,
tabs, case, CRLF, continuation lines, comments, includes, nested .lib sections, unclosed, nested...),
each carrying a `shell touch SENTINEL`, goes through the real runner, the stand-alone runner and the
CLI: each must be refused with a typed error naming file and line, and no sentinel may appear.
Benign variants (includes, .lib sections, indented statements) still run in real ngspice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtc_analog.cli import main
from mtc_analog.errors import NetlistValueError, UnsafeNetlistError
from mtc_analog.spice.netlist import is_own_control, read_netlist, standalone_control
from mtc_analog.spice.runner import run_standalone, run_transient

CIRCUIT = "V1 a 0 PWL(0 0 1u 1)\nR1 a b 1k\nC1 b 0 1n\n.ic v(a)=0 v(b)=0\n.tran 10n 2u 0 10n\n.save v(a) v(b)\n"


def _shell(sentinel: Path) -> str:
    return f"shell touch {sentinel}"


def _corpus(tmp: Path) -> dict[str, tuple[str, dict[str, str]]]:
    """name -> (main netlist text, {relative path: text of an included file}); S marks the sentinel."""
    s = _shell(tmp / "SENTINEL")
    block = f".control\n{s}\n.endc\n"
    return {
        "plain": (f"* t\n{CIRCUIT}{block}.end\n", {}),
        "indented-spaces": (f"* t\n{CIRCUIT}   .control\n   {s}\n   .endc\n.end\n", {}),
        "indented-tab": (f"* t\n{CIRCUIT}\t.control\n\t{s}\n\t.endc\n.end\n", {}),
        "upper-case": (f"* t\n{CIRCUIT}.CONTROL\n{s.upper()}\n.ENDC\n.end\n", {}),
        "mixed-case": (f"* t\n{CIRCUIT}.CoNtRoL\n{s}\n.EnDc\n.end\n", {}),
        "trailing-comment": (f"* t\n{CIRCUIT}.control ; run it\n{s}\n.endc $ done\n.end\n", {}),
        "prefix-controls": (f"* t\n{CIRCUIT}.controls\n{s}\n.endcx\n.end\n", {}),
        "unclosed": (f"* t\n{CIRCUIT}.control\n{s}\n", {}),
        "unclosed-before-end": (f"* t\n{CIRCUIT}.control\n{s}\n.end\n", {}),
        "after-end": (f"* t\n{CIRCUIT}.end\n{block}", {}),
        "nested": (f"* t\n{CIRCUIT}.control\n.control\n{s}\n.endc\n.endc\n.end\n", {}),
        "comments-inside": (f"* t\n{CIRCUIT}.control\n* a comment\n\n{s}\n* more\n.endc\n.end\n", {}),
        "crlf": ((f"* t\n{CIRCUIT}{block}.end\n").replace("\n", "\r\n"), {}),
        "cr-only": ((f"* t\n{CIRCUIT}{block}.end\n").replace("\n", "\r"), {}),
        "in-subckt": (f"* t\n.subckt foo x\nR9 x 0 1k\n{block}.ends\n{CIRCUIT}.end\n", {}),
        "before-circuit": (f"* t\n{block}{CIRCUIT}.end\n", {}),
        "star-hash": (f"* t\n{CIRCUIT}*# {s}\n.end\n", {}),
        "star-hash-indented": (f"* t\n{CIRCUIT}  *# {s}\n.end\n", {}),
        "ng-script-title": (f"*ng_script\n{s}\n", {}),
        "ng-script-title-upper": (f"*NG_SCRIPT evil\n{CIRCUIT}{s}\n.end\n", {}),
        "control-title": (f".control\n{s}\n.endc\n{CIRCUIT}.end\n", {}),
        "exec-block": (f"* t\n{CIRCUIT}.exec\n{s}\n.endc\n.end\n", {}),
        "pre-command": (f"* t\n{CIRCUIT}.control\npre_{s}\n.endc\n.end\n", {}),
        "codemodel": (f"* t\n{CIRCUIT}.control\ncodemodel {tmp}/evil.cm\n.endc\n.end\n", {}),
        "osdi": (f"* t\n{CIRCUIT}.osdi {tmp}/evil.osdi\n.end\n", {}),
        "pre-osdi": (f"* t\n{CIRCUIT}.control\npre_osdi {tmp}/evil.osdi\n.endc\n.end\n", {}),
        "load": (f"* t\n{CIRCUIT}.load {tmp}/evil.so\n.end\n", {}),
        "bang-line": (f"* t\n{CIRCUIT}!touch {tmp}/SENTINEL\n.end\n", {}),
        "continuation-control": (f"* t\nR2 a 0 1k\n+ .control\n{CIRCUIT}{s}\n.endc\n.end\n", {}),
        "lone-endc": (f"* t\n{CIRCUIT}.endc\n.end\n", {}),
        "forged-own-block": (f"* t\n{CIRCUIT}.control\nset filetype=binary\n{s}\nrun\nwrite $inputdir/waveforms.raw\n"
                             "quit 0\n.endc\n.end\n", {}),
        "include": (f"* t\n.include inc.sp\n{CIRCUIT}.end\n", {"inc.sp": f"R7 a 0 1meg\n{block}"}),
        "inc-quoted-subdir": (f"* t\n.inc \"sub/inc.sp\"\n{CIRCUIT}.end\n", {"sub/inc.sp": f"  .control\n  {s}\n  .endc\n"}),
        "include-indented-tab": (f"* t\n\t.INCLUDE inc.sp\n{CIRCUIT}.end\n", {"inc.sp": f"\t.Control\n\t{s}\n\t.Endc\n"}),
        "include-unclosed": (f"* t\n.include inc.sp\n{CIRCUIT}.end\n", {"inc.sp": f".control\n{s}\n"}),
        "include-star-hash": (f"* t\n.include inc.sp\n{CIRCUIT}.end\n", {"inc.sp": f"*# {s}\n"}),
        "include-nested": (f"* t\n.include a.sp\n{CIRCUIT}.end\n",
                           {"a.sp": ".include deeper/b.sp\n", "deeper/b.sp": ".include c.sp\n", "deeper/c.sp": block}),
        "include-own-block": (f"* t\n.include inc.sp\n{CIRCUIT}.end\n",
                              {"inc.sp": "\n".join(standalone_control("waveforms.raw", 2e-6)) + "\n"}),
        "lib-section": (f"* t\n.lib models.lib fast\n{CIRCUIT}.end\n",
                        {"models.lib": f".lib fast\nR8 a 0 1meg\n{block}.endl fast\n"}),
        "lib-unused-section": (f"* t\n.lib models.lib fast\n{CIRCUIT}.end\n",
                               {"models.lib": f".lib fast\nR8 a 0 1meg\n.endl fast\n.lib slow\n{block}.endl slow\n"}),
        "lib-nested": (f"* t\n.LIB outer.lib TT\n{CIRCUIT}.end\n",
                       {"outer.lib": ".lib tt\n.lib inner/inner.lib core\n.endl tt\n",
                        "inner/inner.lib": f".lib core\n\t.control\n{s}\n\t.endc\n.endl core\n"}),
        "include-cycle": (f"* t\n.include a.sp\n{CIRCUIT}.end\n", {"a.sp": ".include b.sp\n", "b.sp": ".include a.sp\n"}),
        "lib-cycle": (f"* t\n.lib l.lib s\n{CIRCUIT}.end\n", {"l.lib": ".lib s\n.lib l.lib s\n.endl s\n"}),
    }


def _write(tmp: Path, name: str, case: tuple[str, dict[str, str]]) -> Path:
    main_text, files = case
    folder = tmp / name
    folder.mkdir()
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    path = folder / "net.cir"
    path.write_bytes(main_text.encode())
    return path


def test_corpus_has_enough_variants(tmp_path):
    assert len(_corpus(tmp_path)) >= 30


@pytest.mark.parametrize("name", sorted(_corpus(Path("/x"))))
def test_foreign_control_constructs_are_refused_and_nothing_runs(tmp_path, name):
    sentinel = tmp_path / "SENTINEL"
    path = _write(tmp_path, name, _corpus(tmp_path)[name])
    with pytest.raises(UnsafeNetlistError) as info:  # the shared-mode runner (PySpice)
        run_transient(path, log_dir=tmp_path / "logs")
    message = str(info.value)
    assert ":" in message and "remove" in message  # names file:line and says what to do
    assert str(tmp_path) in message or "net.cir" in message
    with pytest.raises(UnsafeNetlistError):  # the stand-alone runner (ngspice -b) checks first too
        run_standalone(path)
    assert not sentinel.exists() and not (tmp_path / "sentinel").exists()


@pytest.mark.parametrize("name", ["indented-tab", "include", "star-hash", "lib-nested"])
def test_simulate_cli_refuses_with_one_line(tmp_path, capsys, name):
    path = _write(tmp_path, name, _corpus(tmp_path)[name])
    out = tmp_path / "sim"
    assert main(["simulate", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mtc-analog simulate: error:") and err.count("\n") == 1, err
    assert "Traceback" not in err and not out.exists()
    assert not (tmp_path / "SENTINEL").exists() and not (tmp_path / "sentinel").exists()


def test_refusal_names_the_included_file_and_line(tmp_path):
    path = _write(tmp_path, "include-nested", _corpus(tmp_path)["include-nested"])
    with pytest.raises(UnsafeNetlistError, match=r"deeper/c\.sp:1: a \.control"):
        read_netlist(path.read_text(), path)


def test_missing_include_is_a_netlist_value_error(tmp_path):
    path = tmp_path / "net.cir"
    path.write_text(f"* t\n.include nowhere.sp\n{CIRCUIT}.end\n")
    with pytest.raises(NetlistValueError, match="nowhere.sp"):
        run_transient(path)


def test_benign_includes_sections_and_indentation_run(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "parts.lib").write_text(
        "* a library\n.lib tt\n  R2 b 0 1k ; half the divider\n.endl tt\n.lib ff\nR2 b 0 1\n.endl ff\n")
    (tmp_path / "src.sp").write_text("V1 a 0 PWL(0 0 1u 1)\n")
    path = tmp_path / "net.cir"
    path.write_text("* benign\n.include src.sp\n\t.lib lib/parts.lib TT\n  R1 a b\n* a comment between\n+ 1k\n"
                    ".ic v(a)=0 v(b)=0\n.TRAN 10n 2u 0 10n\n.save v(a)\n.save v(b)\n.end\n")
    text = read_netlist(path.read_text(), path).text()
    assert "R2 b 0 1k" in text and "R2 b 0 1\n" not in text and "V1 a 0" in text
    waves = run_transient(path)
    np.testing.assert_allclose(waves["b"][-1], 0.5, rtol=1e-3)  # the section's 1k, not the other one's 1 ohm


def test_own_control_block_is_recognised_exactly():
    own = standalone_control("waveforms.raw", 1e-2)
    assert is_own_control(own)
    assert is_own_control([".control", "set filetype=binary", "run", "write $inputdir/waveforms.raw", "quit 0", ".endc"])
    assert not is_own_control(own[:3] + ["shell touch x"] + own[3:])
    assert not is_own_control([line.replace("waveforms.raw", "../x;shell") for line in own])
    assert not is_own_control(own[:-1])


_PAYLOAD_LINES = [".control", "shell touch SENTINEL", ".endc"]


@settings(max_examples=300, deadline=None)
@given(
    indents=st.lists(st.sampled_from(["", " ", "  ", "\t", " \t "]), min_size=3, max_size=3),
    cases=st.lists(st.sampled_from(["lower", "upper", "title"]), min_size=3, max_size=3),
    between=st.sampled_from(["", "* c\n", "\n", "*\n\n"]),
    newline=st.sampled_from(["\n", "\r\n"]),
    trailer=st.sampled_from(["", " ; x", " $ x"]),
    drop_end=st.booleans(),
    where=st.sampled_from(["start", "middle", "end", "after_end"]),
)
def test_fuzzed_control_blocks_are_always_refused(indents, cases, between, newline, trailer, drop_end, where):
    lines = []
    for line, indent, case in zip(_PAYLOAD_LINES, indents, cases):
        line = {"lower": line.lower(), "upper": line.upper(), "title": line.title()}[case]
        lines.append(indent + line + (trailer if line.startswith(".") or line.startswith(".".upper()) else ""))
    if drop_end:
        lines = lines[:2]
    block = between.join(l + "\n" for l in lines)
    circuit = CIRCUIT.splitlines(keepends=True)
    if where == "start":
        body = block + "".join(circuit) + ".end\n"
    elif where == "middle":
        body = "".join(circuit[:3]) + block + "".join(circuit[3:]) + ".end\n"
    elif where == "end":
        body = "".join(circuit) + block + ".end\n"
    else:
        body = "".join(circuit) + ".end\n" + block
    text = ("* fuzz\n" + body).replace("\n", newline)
    with pytest.raises(UnsafeNetlistError):
        read_netlist(text)


@pytest.mark.parametrize("target", ["/dev/zero", "."])
def test_include_of_a_device_or_folder_is_refused_without_reading_it(tmp_path, target):
    path = tmp_path / "net.cir"
    path.write_text(f"* t\n.include {target}\n{CIRCUIT}.end\n")
    with pytest.raises(NetlistValueError, match="not a regular file"):
        read_netlist(path.read_text(), path)


def test_a_spiceinit_in_the_current_or_netlist_folder_never_runs(tmp_path):
    # ngspice sources ./.spiceinit at start-up, in shared mode and in batch mode alike: a user who runs
    # `mtc-analog simulate` inside someone else's folder must not run its commands
    import os
    import subprocess
    import sys

    from mtc_analog.hardware import HardwareTarget
    from mtc_analog.neuron.regimes import get_preset
    from mtc_analog.spice.export import export_neuron
    from mtc_analog.spice.protocol import NeuronSetup, StepProtocol

    root = Path(__file__).resolve().parents[1]
    sentinel = tmp_path / "SENTINEL"
    (tmp_path / ".spiceinit").write_text(f"{_shell(sentinel)}\n")
    (tmp_path / "net.cir").write_text(f"* t\n{CIRCUIT}.end\n")
    proc = subprocess.run([sys.executable, "-m", "mtc_analog", "simulate", "net.cir", "--out", "sim"], cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=str(root)), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert not sentinel.exists() and not (tmp_path / "sentinel").exists()
    p = get_preset("tonic_spiking")
    result = export_neuron(NeuronSetup(p.params, StepProtocol(p.i0, p.i1, 50.0, 150.0, p.dt)), HardwareTarget(), tmp_path / "exp")
    (tmp_path / "exp" / ".spiceinit").write_text(f"{_shell(sentinel)}\n")
    run_standalone(result.netlist_path)
    assert not sentinel.exists() and not (tmp_path / "sentinel").exists()
