"""Eval suites: load them, run them through the engine, measure, report."""
