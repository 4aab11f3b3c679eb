"""One-off studies behind the reports: the recipe screening, arm comparisons, EnvPool's fidelity, action statistics."""
