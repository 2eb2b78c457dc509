"""The One-Roof verification suite: invariant tests by stage (baseline, gate, greenfield,
finalized) and their conftest; the readers they use live in `oneroof.core`.
"""
