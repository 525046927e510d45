"""WSGI entry point: gunicorn runs `photofeed.wsgi` (callable `application`)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "photofeed.settings")

application = get_wsgi_application()
