"""Domain model: users, collections, roles and the access decision. Plain Python, no Tornado."""
