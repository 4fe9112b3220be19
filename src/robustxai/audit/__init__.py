"""Audit engine: config, stages, store and runner."""
