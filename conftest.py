"""The whole test session: an installed experiment tracker (plugins/dermbench-mlflow) stays off,
so that every run of the suite does not write an MLflow store; its own tests turn it on."""

from __future__ import annotations

import os

os.environ["DERMBENCH_MLFLOW"] = "0"
os.environ.pop("DERMBENCH_TENSORBOARD", None)
