"""Audit engine: config, plan, stages and runner.

The package exports the configuration (what every other part of the audit and its callers share); the
runner is reached through :func:`robustxai.run_audit`, which also builds the report.
"""

from robustxai.audit._config import PROFILES, AuditConfig, load_config, validate_config

__all__ = ["PROFILES", "AuditConfig", "load_config", "validate_config"]
