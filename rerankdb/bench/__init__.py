"""Benchmarks that print figures beside baselines measured in the same run.

Run ``python -m rerankdb.bench --help``.  Nothing here asserts a timing:
the figures are for people (README tables, issue notes), ratios first.
"""
