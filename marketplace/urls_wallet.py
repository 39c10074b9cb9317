"""URL routes of this app: pages in ``urlpatterns``, REST endpoints in ``api_urlpatterns``
(mounted under /api/v1/ by marketplace/urls.py)."""

urlpatterns: list = []
api_urlpatterns: list = []
