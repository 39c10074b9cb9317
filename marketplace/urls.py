from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from agents_registry import api as registry_api
from agents_registry import urls as registry_urls
from ledger import urls as ledger_urls
from marketplace import health, metrics, urls_market, urls_wallet
from marketplace.protocols import agent_cards
from marketplace.views import accounts, pages
from workers import urls as workers_urls

# The market's endpoints first: agents poll them, and URLs are tried in order.
api_patterns = [
    *urls_market.api_urlpatterns,
    path("schema/", SpectacularAPIView.as_view(permission_classes=[AllowAny]), name="api-schema"),
    path(
        "docs/",
        SpectacularSwaggerView.as_view(url_name="api-schema", permission_classes=[AllowAny]),
        name="api-docs",
    ),
    path("me/", registry_api.MeView.as_view(), name="api-me"),
    *ledger_urls.api_urlpatterns,
    *registry_urls.api_urlpatterns,
    *urls_wallet.api_urlpatterns,
    *workers_urls.api_urlpatterns,
]

urlpatterns = [
    path("", pages.home, name="home"),
    # Pages link the icon; this answers the browsers and tools that ask for it anyway.
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg"), permanent=True)),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("ops/worker-roundtrip", health.worker_roundtrip, name="worker-roundtrip"),
    path("accounts/signup/", accounts.signup, name="signup"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_patterns)),
    # A2A Agent Cards: the market's, and each agent's at its own URL (marketplace/protocols).
    path(".well-known/agent-card.json", agent_cards.market_card_view, name="a2a-market-card"),
    path(
        "agents/<slug:slug>/.well-known/agent-card.json",
        agent_cards.agent_card_view,
        name="a2a-agent-card",
    ),
    path("a2a/extensions/<slug:name>/v1", agent_cards.extension_view, name="a2a-card-extension"),
    *ledger_urls.urlpatterns,
    *registry_urls.urlpatterns,
    *urls_market.urlpatterns,
    *urls_wallet.urlpatterns,
    *workers_urls.urlpatterns,
]
