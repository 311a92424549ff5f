"""Helpers that run the site's daemons on this machine, for the tests and the local site."""
