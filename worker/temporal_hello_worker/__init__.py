"""Hello-world Temporal worker configured only by Temporal's environment configuration."""
