"""Softmax Lab's benchmarks: training speed against peers and the floor, dashboard latency, memory.

Run ``python -m bench --help``; bench/README.md says how to read the output.
"""
