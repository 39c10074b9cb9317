"""URL routes of this app: pages in ``urlpatterns``, REST endpoints in ``api_urlpatterns``
(mounted under /api/v1/ by marketplace/urls.py)."""

from django.urls import path

from ledger import views

urlpatterns: list = [
    path("stripe/webhook/", views.stripe_webhook, name="stripe-webhook"),
]
api_urlpatterns: list = []
