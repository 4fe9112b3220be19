"""Every unit kind of the audit, registered by importing this module.

:mod:`robustxai.audit._plan` registers the robustness and explanation kinds itself; the sanity-check and
manipulation kinds live in their own stage modules. The runner and every executor worker import this module,
so a Ray worker that unpickles a unit knows its kind however it was started.
"""

from __future__ import annotations

from robustxai.audit import _stages_manip as stages_manip, _stages_sanity as stages_sanity
from robustxai.audit._plan import UNIT_KINDS

__all__ = ["UNIT_KINDS", "stages_manip", "stages_sanity"]
