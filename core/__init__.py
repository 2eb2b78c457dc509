"""The core library of oneroof: the release package, the gate, signed approvals, rehearsal
evidence, the metrics and content readers and the settings table. The executor and the
verification suite both build on it; it builds only on `oneroof.harness`.
"""
