"""Passwords, tokens and the authentication service."""
