"""How the API shows what the services return: one module per resource, each turning domain objects into the
JSON that docs/openapi.yaml describes (the ``data`` of the envelope; http/base.py wraps it).

The keys, their order and the formats of times are the contract with the Go server's clients: a presenter is the
one place a field is named, and tests/unit/test_presenters.py holds every presenter against the spec's schema.
"""
