"""Benchmark suite: bench_<op>.py per op, run.py drives them (python -m benchmarks.run, or make bench)."""
