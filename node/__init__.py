"""Code that runs on the servers themselves, shipped like the app and tested on its own.

``node.discovery``: the load balancer's agent that keeps HAProxy's backends equal to the members
of the web and app groups, through HAProxy's runtime API.
"""
