"""Benchmarks: latency, throughput, Lambda, training speed, and serving speed-ups."""
