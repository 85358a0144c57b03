"""Offline evaluation: ``rerankdb eval movielens PATH`` (see runner.py)."""
