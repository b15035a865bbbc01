"""Research that uses the stages and is never used by them: swap test, probes, ablations."""
