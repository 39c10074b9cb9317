"""WSGI entry point, for deployments that serve plain HTTP through gunicorn."""

import gc
import os

from django.core.wsgi import get_wsgi_application

from core.tracing import tracing_start

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
tracing_start("marketplace-web")  # before the handler loads: it adds Django's middleware
application = get_wsgi_application()

# What was loaded is there to stay: out of the collector's way (gc.freeze), and collections of
# the youngest generation 70 times rarer (a request allocates tens of thousands of objects, and
# each collection paused every thread of the worker).
gc.freeze()
gc.set_threshold(50_000, 20, 20)
