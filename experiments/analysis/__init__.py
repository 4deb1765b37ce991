"""Sweep analysis for compare.py: load run dirs, aggregate over seeds, plot, report."""
