"""Tracker exports (MLflow, TensorBoard): imported only by export.py and +logger=, never by the core."""
