"""What every report of a rehearsal shows, whatever the run."""

# The rows of the source document's classification matrix, in its order: every report shows them.
SEED_ROWS = [
    "Production rollout executor",
    "Rollback executor",
    "Verification suite",
    "Gate monitor",
    "Option 3 inert shadow",
    "Clone harness",
    "Human ratification gate",
    "Production activation (tiers 2–6 in prod)",
]
