"""Sensors of the AEP provider."""
