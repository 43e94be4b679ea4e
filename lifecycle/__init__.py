"""The research lifecycle: experiment specs, runs that reproduce, qualification against a
baseline, shadow replay, promotion and the registry of strategies, runs, signals and
performance in the warehouse's SQL state (docs/research.md)."""
