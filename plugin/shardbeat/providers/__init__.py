"""Wire formats of the services: request building and response parsing as plain data (sans-I/O)."""
