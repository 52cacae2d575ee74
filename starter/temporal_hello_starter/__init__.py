"""HTTP starter service for the hello-world workflow (port 8000)."""
