"""Compute of the ML solution: training-run utilization (MLflow) and serving-replica capacity advice."""
