"""Operator commands: ``stats``, ``doctor``, ``trim`` and ``flush``, and the helper's
end-of-run housekeeping (fleet statistics, automatic trim). See docs/operations.md.

Modules, one job each: :mod:`.fleet` (fleet counters in Redis), :mod:`.stats_cmd`
(gathering and printing them), :mod:`.doctor` (checks), :mod:`.trim` (the local directory),
:mod:`.flush` (deleting a namespace), :mod:`.common` (what they share) and :mod:`.cli` (the
click commands). Only :mod:`.cli` imports click; nothing imports redis-py at module level.
"""
