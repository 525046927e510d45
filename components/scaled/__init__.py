"""Components of the `scaled` profile (profiles/scaled.py): the same site on AWS's managed services.

One module per component — network, firewalls, database, buckets, certificate, load balancer, CDN, the app
servers' identity, their secret store and the servers themselves — plus two pure helpers: `boot.py` renders
what an app server receives (reusing the single server's templates), `prices.py` estimates the monthly bill.
"""
