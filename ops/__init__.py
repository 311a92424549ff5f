"""Post-deploy operations for the foobar stacks: ``python -m ops verify`` and ``python -m ops reap``.

``verify`` compares a deployed stack with what the program declares (running servers, the firewall
table of components/firewalls.py, the database pair, the certificate, HTTPS). ``reap`` destroys the
per-pull-request stacks whose ``expires-at`` tag has passed.
"""
