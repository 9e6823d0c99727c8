"""Benchmarks of airflow-provider-aep: run ``make bench`` (writes bench/RESULTS.md)."""
