from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from .forms import PhotoForm
from .models import Photo

LATEST_COUNT = 20


def _render_home(request, form, status=200):
    context = {
        "photos": Photo.objects.all()[:LATEST_COUNT],
        "total": Photo.objects.count(),
        "form": form,
    }
    return render(request, "feed/home.html", context, status=status)


@require_GET
def home(request):
    return _render_home(request, PhotoForm())


@require_POST
def upload(request):
    form = PhotoForm(request.POST, request.FILES)
    if not form.is_valid():
        # Re-show the page with the errors; 400 so clients and logs see a failure.
        return _render_home(request, form, status=400)
    form.save()
    # 303 See Other: the browser follows with a GET, so a reload can't re-post.
    response = HttpResponseRedirect(reverse("feed:home"))
    response.status_code = 303
    return response
