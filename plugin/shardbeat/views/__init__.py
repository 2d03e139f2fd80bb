"""Human renderings: the status table and the one-line text view of records. Pure functions."""
