"""Configuration as code: Kubernetes-style YAML documents read into domain objects."""
