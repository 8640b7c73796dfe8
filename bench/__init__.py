"""Runnable benchmarks printing ratios."""
