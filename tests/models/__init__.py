"""Model families for fxtrace's tests and benchmarks (plain importable modules, no pytest)."""
