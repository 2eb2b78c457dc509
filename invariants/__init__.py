"""The One-Roof verification suite: invariant tests by stage, and the SQL of every metric."""
