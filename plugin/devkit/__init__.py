"""Development tools shared by the tests, the benchmarks and the demo: build a plugin, run a real OpenBao."""
