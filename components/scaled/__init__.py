"""Components of the `scaled` profile (profiles/scaled.py): the same site on AWS's managed services.

One module per component — network, firewalls, database, buckets, certificate, load balancer, CDN, the app
servers' identity, their secret store and the servers themselves. What an app server receives is rendered by
server/appserver.py (reusing the single server's templates); the monthly bill is estimated by catalog/scaledcost.py.
"""
