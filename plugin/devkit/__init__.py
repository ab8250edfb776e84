"""Tools around the plugin, never imported by it: build and package it, install it, render its configs, and
run a real OpenBao server or cluster for the tests, benchmarks and the demo."""
