"""The HTTP layer: Tornado lives only here. One module per API area, each ending with its route list."""
