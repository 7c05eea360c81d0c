"""Named health checks behind ``/ready`` and the collection health endpoint (CONTRACT §8)."""
