"""Customer health and support metrics, folded from the interaction log."""
