"""Labelled synthetic PII documents (see generate.py)."""
