import logging

from django.db import connection
from django.http import HttpResponse

logger = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"


class HealthCheckMiddleware:
    """Answer /healthz before any other middleware runs.

    Placed first in MIDDLEWARE so the answer does not depend on the Host header
    (ALLOWED_HOSTS is only checked when something calls request.get_host()),
    SECURE_SSL_REDIRECT or APPEND_SLASH: load balancers and the deploy script
    probe with arbitrary Host headers over plain HTTP.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info != HEALTH_PATH:
            return self.get_response(request)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        except Exception as exc:
            logger.warning("health check failed: database unavailable: %s", exc)
            # Only the exception class: the message may name hosts or users.
            return self._plain(f"database unavailable ({type(exc).__name__})", status=503)
        return self._plain("ok")

    @staticmethod
    def _plain(body, status=200):
        response = HttpResponse(body, status=status, content_type="text/plain; charset=utf-8")
        response["Cache-Control"] = "no-store"
        # CommonMiddleware, which would normally add this, never runs for /healthz.
        response["Content-Length"] = str(len(response.content))
        return response
