"""Benchmark suite: bench_<op>.py per op, run.py drives them (python -m tricks_ext bench)."""
