from django.db import models


class Photo(models.Model):
    title = models.CharField(max_length=120)
    image = models.ImageField(upload_to="photos/")
    # Indexed: the home page orders by it and takes the newest 20.
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.title
