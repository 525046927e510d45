import io
import shutil
import tempfile
from unittest import mock

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import OperationalError
from django.test import TestCase, override_settings
from photofeed.settings import database_from_url
from PIL import Image

from .models import Photo

# Production settings use ManifestStaticFilesStorage, which needs collectstatic
# to have run; tests render templates with plain static names instead.
TEST_STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}


def png_bytes(size=(8, 8), color="teal"):
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


class MediaTestCase(TestCase):
    """Writes uploads to a throwaway MEDIA_ROOT."""

    @classmethod
    def setUpClass(cls):
        cls.media_root = tempfile.mkdtemp(prefix="photofeed-media-")
        cls.addClassCleanup(shutil.rmtree, cls.media_root, ignore_errors=True)
        cls.enterClassContext(override_settings(MEDIA_ROOT=cls.media_root, STORAGES=TEST_STORAGES))
        super().setUpClass()


class HomePageTests(MediaTestCase):
    def test_lists_photos_newest_first_with_total(self):
        Photo.objects.create(title="Older sunset", image=SimpleUploadedFile("a.png", png_bytes()))
        Photo.objects.create(title="Newer harbour", image=SimpleUploadedFile("b.png", png_bytes()))

        response = self.client.get("/")

        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "Newer harbour")
        self.assertContains(response, "2 photos in total")
        self.assertContains(response, 'src="/media/photos/')
        self.assertContains(response, 'href="/static/feed/site.css"')
        body = response.content.decode()
        self.assertLess(body.index("Newer harbour"), body.index("Older sunset"))

    def test_shows_at_most_20_photos(self):
        for i in range(22):
            Photo.objects.create(title=f"photo-{i:02d}", image="photos/x.png")
        response = self.client.get("/")
        self.assertEqual(len(response.context["photos"]), 20)
        self.assertEqual(response.context["total"], 22)

    def test_empty_feed(self):
        response = self.client.get("/")
        self.assertContains(response, "No photos yet")
        self.assertContains(response, 'enctype="multipart/form-data"')


class UploadTests(MediaTestCase):
    def test_valid_png_creates_photo_and_redirects(self):
        image = SimpleUploadedFile("dot.png", png_bytes(), content_type="image/png")

        response = self.client.post("/upload/", {"title": "A teal dot", "image": image})

        self.assertEqual(response.status_code, 303)
        self.assertEqual(response["Location"], "/")
        photo = Photo.objects.get()
        self.assertEqual(photo.title, "A teal dot")
        self.assertTrue(photo.image.name.startswith("photos/"))
        with Image.open(photo.image.path) as stored:
            self.assertEqual(stored.size, (8, 8))

    def test_non_image_is_rejected(self):
        fake = SimpleUploadedFile("notes.png", b"this is not an image", content_type="image/png")

        with self.assertLogs("django.request", "WARNING"):
            response = self.client.post("/upload/", {"title": "Sneaky", "image": fake})

        self.assertEqual(response.status_code, 400)
        self.assertFalse(Photo.objects.exists())
        self.assertTrue(response.context["form"].errors["image"])

    def test_csrf_is_enforced(self):
        client = self.client_class(enforce_csrf_checks=True)
        image = SimpleUploadedFile("dot.png", png_bytes(), content_type="image/png")
        with self.assertLogs("django.security.csrf", "WARNING"):
            response = client.post("/upload/", {"title": "No token", "image": image})
        self.assertEqual(response.status_code, 403)
        self.assertFalse(Photo.objects.exists())

    def test_get_is_not_allowed(self):
        with self.assertLogs("django.request", "WARNING"):
            response = self.client.get("/upload/")
        self.assertEqual(response.status_code, 405)


@override_settings(ALLOWED_HOSTS=["photofeed.example"])
class HealthzTests(TestCase):
    def test_ok_with_any_host(self):
        response = self.client.get("/healthz", HTTP_HOST="evil.example")

        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.content, b"ok")
        self.assertTrue(response["Content-Type"].startswith("text/plain"))

    def test_other_paths_still_validate_host(self):
        # Shows the healthz test above is meaningful: this host is not allowed.
        with self.assertLogs("django.security.DisallowedHost", "ERROR"):
            response = self.client.get("/", HTTP_HOST="evil.example")
        self.assertEqual(response.status_code, 400)

    @override_settings(SECURE_SSL_REDIRECT=True, APPEND_SLASH=True)
    def test_no_redirects(self):
        response = self.client.get("/healthz", HTTP_HOST="10.0.0.5:8000")
        self.assertEqual(response.status_code, 200)

    def test_503_when_database_fails(self):
        failing = mock.patch(
            "django.db.backends.utils.CursorWrapper.execute",
            side_effect=OperationalError("connection refused"),
        )
        # Django also logs every 5xx on django.request; keep both out of the output.
        with failing, self.assertLogs("feed.middleware", "WARNING"), self.assertLogs("django.request", "ERROR"):
            response = self.client.get("/healthz", HTTP_HOST="evil.example")

        self.assertEqual(response.status_code, 503)
        self.assertIn(b"database unavailable", response.content)
        self.assertNotIn(b"connection refused", response.content)
        self.assertTrue(response["Content-Type"].startswith("text/plain"))


@override_settings(STORAGES=TEST_STORAGES)
class AdminTests(TestCase):
    def test_photo_registered_and_changelist_renders(self):
        self.assertTrue(admin.site.is_registered(Photo))
        user = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw-for-tests")
        self.client.force_login(user)
        response = self.client.get("/admin/feed/photo/")
        self.assertEqual(response.status_code, 200)


class DatabaseUrlTests(TestCase):
    def test_parses_and_unquotes(self):
        db = database_from_url("postgres://app%40svc:p%2Fss%3Aw@db.internal:6432/photo_feed?sslmode=require")
        self.assertEqual(db["ENGINE"], "django.db.backends.postgresql")
        self.assertEqual(db["USER"], "app@svc")
        self.assertEqual(db["PASSWORD"], "p/ss:w")
        self.assertEqual(db["HOST"], "db.internal")
        self.assertEqual(db["PORT"], "6432")
        self.assertEqual(db["NAME"], "photo_feed")
        self.assertEqual(db["OPTIONS"], {"sslmode": "require"})

    def test_minimal_url(self):
        db = database_from_url("postgresql://localhost/feed")
        self.assertEqual((db["HOST"], db["PORT"], db["USER"], db["PASSWORD"]), ("localhost", "", "", ""))
        self.assertNotIn("OPTIONS", db)

    def test_rejects_other_schemes(self):
        with self.assertRaises(ImproperlyConfigured):
            database_from_url("mysql://u:p@h/db")
