"""The guestbook of www.foobar.com: the Python application of the app tier.

Run it with gunicorn's factory syntax: ``gunicorn -k gthread 'app.main:create_app()'``.
Writes go to the database primary, reads to the read replica, both over verified TLS.
"""
