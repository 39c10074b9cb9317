"""The Stripe webhook endpoint: verified on the raw body, answered quickly."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from ledger.exceptions import LedgerBusy, PaymentsNotConfigured, WebhookSignatureInvalid
from ledger.purchases import webhook_receive

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """2xx once the event is applied (or known); 400 for a bad signature, so Stripe stops.

    Any other failure answers 500 and Stripe delivers the event again later; the event id makes
    the retry harmless.
    """
    try:
        outcome = webhook_receive(
            payload=request.body, signature=request.headers.get("Stripe-Signature", "")
        )
    except WebhookSignatureInvalid as error:
        logger.warning("stripe webhook refused: %s", error)
        return JsonResponse({"error": "invalid signature"}, status=400)
    except PaymentsNotConfigured:
        return JsonResponse({"error": "payments are not configured"}, status=503)
    except LedgerBusy:
        # Nothing was applied (the event id rolled back with the effect): Stripe delivers again.
        return JsonResponse({"error": "busy, retry"}, status=503)
    return JsonResponse({"received": True, "outcome": outcome})
