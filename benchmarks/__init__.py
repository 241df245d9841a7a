"""Benchmarks: throughput, latency, resource and recall measurements of the edge runtime."""
