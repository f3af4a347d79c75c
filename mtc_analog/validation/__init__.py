"""Circuit-versus-model validation (docs/reference.md §10): metrics, runs, dt study, reports, the demo.

    from mtc_analog.validation.workflow import validate_checkpoint, validate_into
    from mtc_analog.validation.runs import ValidationSettings, validate_network, dt_study
    from mtc_analog.validation.metrics import coincidence_factor, membrane_nrmse, signal_nrmse
    from mtc_analog.validation.demo import run_demo                  # the main job
    from mtc_analog.validation.montecarlo import run_montecarlo, MonteCarloSettings  # mismatch study

Modules: :mod:`.metrics` (pure numpy: NRMSE, Kistler's Gamma, spike agreement), :mod:`.align`
(circuit -> model units and grid, through the hardware target), :mod:`.fidelity` (one model run vs
one circuit run, pass thresholds), :mod:`.runs` (driving model and ngspice with the same input,
dt study), :mod:`.report` (report.json + self-contained report.html), :mod:`.workflow` (output
directory discipline), :mod:`.regimes` (the regime gallery in SPICE), :mod:`.demo` (the main job).
"""
