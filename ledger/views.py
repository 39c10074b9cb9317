"""The Stripe webhook endpoint: verified on the raw body, answered quickly."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from ledger.exceptions import (
    LedgerBusy,
    LedgerError,
    PaymentsNotConfigured,
    PurchaseNotYetKnown,
    WebhookMalformed,
    WebhookSignatureInvalid,
)
from ledger.purchases import webhook_receive

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """2xx once the event is applied (or known); 400 for a bad signature or a malformed event,
    so Stripe stops; 409 for an event about a purchase not known yet and 503 when busy, so
    Stripe delivers it again later (nothing was recorded: the event id rolled back with the
    effect, so the retry is applied once). Errors in the API's one shape."""
    try:
        outcome = webhook_receive(
            payload=request.body, signature=request.headers.get("Stripe-Signature", "")
        )
    except (WebhookSignatureInvalid, WebhookMalformed) as error:
        logger.warning("stripe webhook refused: %s", error)
        return _error(error)
    except (PaymentsNotConfigured, LedgerBusy, PurchaseNotYetKnown) as error:
        logger.info("stripe webhook to be delivered again: %s", error)
        return _error(error)
    return JsonResponse({"received": True, "outcome": outcome})


def _error(error: LedgerError) -> JsonResponse:
    body = {"error": {"code": error.code, "message": str(error), "fields": {}}}
    return JsonResponse(body, status=error.http_status)
