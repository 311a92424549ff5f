"""The foobar policy pack directory, importable as ``policy`` so tests and mypy can reach ``policy.foobar_policies``.

The Pulumi CLI does not import this package: it runs ``__main__.py`` with this directory on ``sys.path``.
"""
