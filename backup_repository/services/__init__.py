"""Application services: the use cases behind the HTTP API, on top of configuration, database and storage."""
