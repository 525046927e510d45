from django import forms

from .models import Photo

# Keep in step with nginx's client_max_body_size (the deployer sets it).
MAX_IMAGE_BYTES = 10 * 1024 * 1024


class PhotoForm(forms.ModelForm):
    class Meta:
        model = Photo
        fields = ["title", "image"]

    def clean_image(self):
        # ImageField has already checked with Pillow that this is an image.
        image = self.cleaned_data["image"]
        if image.size > MAX_IMAGE_BYTES:
            raise forms.ValidationError(f"Images must be at most {MAX_IMAGE_BYTES // (1024 * 1024)} MB.")
        return image
