"""dermbench-mlflow: dermbench runs and sweeps tracked in MLflow (and TensorBoard), through the lifecycle hooks alone."""
