"""Hydra-side helpers of experiments/run.py: schema, run directory, logging, sweep bookkeeping."""
