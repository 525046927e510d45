from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path

# /healthz is not routed here: feed.middleware.HealthCheckMiddleware answers it
# before host validation and redirects can get in the way.
urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("feed.urls")),
]

# In production nginx serves /media (and /static); static() is a no-op unless DEBUG.
if settings.DEBUG:
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
