"""Figures shared by the CLI, reports and examples, one module per stage of the data flow.

Uses the non-interactive Agg backend: figures are written to files, never shown.
"""

import matplotlib

matplotlib.use("Agg")
