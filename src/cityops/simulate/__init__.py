"""Simulator: realistic Đồng Nai sensor and facility data for the demo and benchmarks."""
