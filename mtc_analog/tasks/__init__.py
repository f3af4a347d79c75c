"""Tasks (Mackey-Glass) and their metrics."""

from .mackey_glass import Split, TaskConfig, TaskData, make_task, mackey_glass_series
from .metrics import mse, nrmse, rmse, upward_crossings

__all__ = ["Split", "TaskConfig", "TaskData", "make_task", "mackey_glass_series", "mse", "nrmse", "rmse", "upward_crossings"]
