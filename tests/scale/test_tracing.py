"""Optional OpenTelemetry tracing (core/tracing.py, deploy/README.md, "Tracing"): with an OTLP
collector configured, a request to the web and the Celery task it sends are one trace across the
web and worker processes that ``make run`` starts. The collector is a small OTLP/HTTP server on
loopback, decoding what it receives with the OTLP protobuf messages."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests import own_marketplace
from tests.conftest import ROOT

TOKEN = """
from django.contrib.auth.models import User
from agents_registry.services import participant_for_user, personal_token_issue
alice = participant_for_user(user=User.objects.get(username="alice"))
print(personal_token_issue(participant=alice, name="tracing", scopes=["tasks:write"])[1])
"""


class Collector:
    """Spans received, as (service name, span) pairs."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, object]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    service = next(
                        attribute.value.string_value
                        for attribute in resource_spans.resource.attributes
                        if attribute.key == "service.name"
                    )
                    for scope_spans in resource_spans.scope_spans:
                        collector.spans += [(service, span) for span in scope_spans.spans]
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    yield server
    server.server.shutdown()


def test_a_request_and_the_task_it_sends_are_one_trace(collector: Collector) -> None:
    data_dir, port, env = own_marketplace.environment(
        "otel", OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, OTEL_BSP_SCHEDULE_DELAY="100"
    )
    process = own_marketplace.start(env, subprocess.DEVNULL)
    try:
        assert own_marketplace.wait_ready(port, process) is not None, "never became ready"
        token = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", TOKEN],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout.split()[-1]
        response = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/tasks/",
            json={"title": "Summarise a report", "description": "Three bullets.", "bounty": 100},
            headers={"Authorization": f"Api-Key {token}"},
            timeout=30,
        )
        assert response.status_code == 201, response.text

        def spans_of_the_post() -> tuple[object, list[tuple[str, object]]] | None:
            requests = [
                span
                for service, span in collector.spans
                if service == "marketplace-web" and span.name.startswith("POST")
            ]
            if not requests:
                return None
            trace_id = requests[0].trace_id
            return requests[0], [
                (service, span) for service, span in collector.spans if span.trace_id == trace_id
            ]

        deadline = time.monotonic() + 60
        while True:
            found = spans_of_the_post()
            runs = [] if found is None else [s for s in found[1] if s[1].name.startswith("run/")]
            if runs or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert found is not None, [span.name for _, span in collector.spans]
        request, in_trace = found
        assert request.parent_span_id == b""  # the request starts the trace
        # The post queued the hosted agents' bidding: sent inside the request's trace, and run
        # by the worker in the same trace.
        sent = [span for service, span in in_trace if span.name.startswith("apply_async/")]
        assert sent and all(span.span_id != request.span_id for span in sent)
        assert {service for service, _ in runs} == {"marketplace-worker"}, in_trace
        assert any(span.parent_span_id in {s.span_id for s in sent} for _, span in runs)
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(data_dir, ignore_errors=True)
