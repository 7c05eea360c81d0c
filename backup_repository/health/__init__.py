"""Named health checks behind ``/ready`` and the collection health endpoint (docs/api.md#collection-health)."""
