"""Optional OpenTelemetry tracing: a request through to the Celery task it sends, one trace.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) names an
OTLP/HTTP collector; the SDK reads the rest of its standard ``OTEL_*`` variables itself
(``OTEL_SERVICE_NAME``, ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_TRACES_SAMPLER``,
``OTEL_BSP_SCHEDULE_DELAY``, ...). Django's requests are server spans; a task sent while one runs
carries its context in the message headers, and the worker's run of it continues the same trace.
A message that the outbox relay sends later (the broker was down at the commit) starts a trace
of its own. Relies on no Django or OpenTelemetry internals: only the instrumentors' public
``instrument()``.
"""

from __future__ import annotations

import os

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def tracing_configured() -> bool:
    return any(os.environ.get(name) for name in ENDPOINT_VARIABLES)


def tracing_start(service_name: str) -> bool:
    """Trace this process's requests and Celery tasks as ``service_name`` (unless
    ``OTEL_SERVICE_NAME`` says otherwise), when a collector is configured. Called once per
    process before Django's handler loads (its middleware is added then) and, in a worker, in
    each pool process (the exporter's thread does not survive a fork)."""
    if not tracing_configured():
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or service_name
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    DjangoInstrumentor().instrument()
    CeleryInstrumentor().instrument()
    return True
