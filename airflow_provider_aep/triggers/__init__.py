"""Triggers of the AEP provider (deferrable mode)."""
