"""The executor of oneroof: the command line and the commands it runs (rehearse, rollout, rollback,
verify, monitor, probe, approvals, report). It builds on `oneroof.core` and `oneroof.harness`.
"""

__version__ = "0.1.0"
