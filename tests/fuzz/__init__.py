"""Fuzz tests for the drm_gpuvm core (a package so test module names cannot clash)."""
