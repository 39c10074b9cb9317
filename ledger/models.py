"""The credit ledger: double entry, balanced by construction, immutable, enforced by the database.

Unit
    One **credit** is the smallest unit of value in the market; every amount is a whole number of
    credits (``BigIntegerField``), never a float. The smallest credit pack sells 1,000 credits for
    one US dollar (a credit is a tenth of a cent; bigger packs are cheaper): ``ledger/packs.py``.

Accounts
    An account has a kind, the reference of its owner (``participant:<id>``, ``task:<id>`` or
    ``platform``) and an ``address`` that is unique (``wallet:participant:7``, ``escrow:task:3``,
    ``platform:stripe_clearing``). The ledger never imports the apps that own those references.
    The platform fee account, which takes a leg of every settlement, is kept as 8 sub-accounts
    (``platform:fees/0`` to ``/7``) so that settlements do not queue on one row lock.
    Wallets, escrows and the dispute hold hold participants' money and may not go negative (a CHECK
    constraint); the platform's own accounts (fees, Stripe clearing, promotional grants,
    receivables) may.

Journal
    A :class:`JournalEntry` is one or more :class:`Transfer` rows, each moving ``amount > 0`` from
    its ``debit_account`` to its ``credit_account``. Balances are *credit-normal*: an account's
    balance is what it received minus what it sent, so a wallet with credits has a positive balance
    and Stripe clearing (which mirrors money held at Stripe) goes negative as credits are sold.
    Because every transfer adds its amount to one account and takes it from another, the ledger sums
    to zero by construction.

What the database enforces (migration ``0002_database_rules``), so that even raw SQL cannot break
the books:

* CHECK constraints: ``amount > 0``, debit and credit accounts differ, ``balance >= 0`` unless the
  account may go negative;
* a trigger on transfers maintains the cached balances: inserting a transfer moves both balances in
  the same statement; a balance cannot be changed any other way (the account trigger refuses an
  update that does not come from the transfer trigger), nor can an account's identity change;
* triggers refuse UPDATE and DELETE on entries, transfers and recorded failures;
* a deferred constraint trigger refuses, at commit, an entry with no transfers (unless it only
  marks an empty escrow resolved);
* idempotency keys are unique, one reversal per entry (unique ``reverses``), one resolution per
  escrow (unique ``resolution_entry``).

Every entry is written by one PL/pgSQL function, ``ledger_post`` (see ``ledger/sql.py``), in one
round trip: it serialises requests with the same idempotency key, replays or refuses them, locks
the accounts in a fixed order, checks funds and escrow state, records a failed debit for its key,
and writes the entry. ``ledger/services.py`` is the only caller.
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q


class Account(models.Model):
    class Kind(models.TextChoices):
        WALLET = "wallet", "Wallet"
        ESCROW = "escrow", "Escrow"
        PLATFORM_FEES = "platform_fees", "Platform fees"
        STRIPE_CLEARING = "stripe_clearing", "Stripe clearing"
        PROMOTIONAL = "promotional", "Promotional grants"
        DISPUTE_HOLD = "dispute_hold", "Dispute hold"
        RECEIVABLE = "receivable", "Receivable"

    address = models.CharField(max_length=160)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    owner_ref = models.CharField(max_length=120)
    may_go_negative = models.BooleanField(default=False)
    balance = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="ledger_account_balance_non_negative",
                condition=Q(balance__gte=0) | Q(may_go_negative=True),
            ),
            models.UniqueConstraint(fields=["address"], name="ledger_account_address_unique"),
            models.UniqueConstraint(fields=["kind", "owner_ref"], name="ledger_account_kind_owner"),
        ]
        indexes = [models.Index(fields=["owner_ref"], name="ledger_account_owner")]

    def __str__(self) -> str:
        return self.address


class JournalEntry(models.Model):
    class Reason(models.TextChoices):
        PROMO_GRANT = "promo_grant", "Promotional grant"
        PURCHASE = "purchase", "Credits bought"
        PURCHASE_REFUND = "purchase_refund", "Purchase refunded at Stripe"
        CHARGEBACK_HOLD = "chargeback_hold", "Chargeback opened: credits held"
        CHARGEBACK_RELEASE = "chargeback_release", "Chargeback won: credits released"
        CHARGEBACK_LOST = "chargeback_lost", "Chargeback lost: credits returned to Stripe"
        RECEIVABLE_REPAYMENT = "receivable_repayment", "Receivable repaid"
        ESCROW_LOCK = "escrow_lock", "Bounty locked in escrow"
        ESCROW_DELEGATE = "escrow_delegate", "Budget delegated to a subtask"
        ESCROW_SETTLE = "escrow_settle", "Escrow settled"
        ESCROW_REFUND = "escrow_refund", "Escrow refunded"
        ESCROW_SPLIT = "escrow_split", "Escrow split on dispute resolution"
        REVERSAL = "reversal", "Reversal"
        TRANSFER = "transfer", "Transfer"

    idempotency_key = models.CharField(max_length=200)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the request's payload")
    reason = models.CharField(max_length=24, choices=Reason.choices)
    domain_ref = models.CharField(max_length=120, blank=True)
    memo = models.TextField(blank=True)
    actor_ref = models.CharField(max_length=120, blank=True)
    occurred_at = models.DateTimeField(help_text="When the event happened (e.g. at Stripe)")
    created_at = models.DateTimeField()
    reverses = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversed_by"
    )

    class Meta:
        verbose_name_plural = "journal entries"
        ordering = ["-id"]
        # Declared as constraints and plain indexes (not unique=/db_index=), so PostgreSQL keeps
        # no second "LIKE" index of each: fewer indexes to write on the hot path.
        constraints = [
            models.UniqueConstraint(fields=["idempotency_key"], name="ledger_entry_key_unique"),
        ]
        indexes = [models.Index(fields=["domain_ref"], name="ledger_entry_domain_ref")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.reason} {self.domain_ref}".strip()


class Transfer(models.Model):
    entry = models.ForeignKey(JournalEntry, on_delete=models.PROTECT, related_name="transfers")
    # Indexed by (account, id) below, which also serves the foreign keys.
    debit_account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    credit_account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    amount = models.BigIntegerField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="ledger_transfer_amount_positive", condition=Q(amount__gt=0)
            ),
            models.CheckConstraint(
                name="ledger_transfer_distinct_accounts",
                condition=~Q(debit_account=F("credit_account")),
            ),
        ]
        indexes = [
            models.Index(fields=["debit_account", "id"], name="ledger_transfer_debit_id"),
            models.Index(fields=["credit_account", "id"], name="ledger_transfer_credit_id"),
        ]

    def __str__(self) -> str:
        return f"{self.amount} from {self.debit_account_id} to {self.credit_account_id}"


class Escrow(models.Model):
    """The escrow of one task: who funded it, and whether (and how) it was resolved.

    Resolution (settle, refund or split) happens at most once: ``ledger_post`` flips ``status``
    from ``open`` under the escrow's row lock, in the same transaction as the resolving entry.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        SETTLED = "settled", "Settled"
        REFUNDED = "refunded", "Refunded"
        SPLIT = "split", "Split"

    task_ref = models.CharField(max_length=120)
    account = models.OneToOneField(Account, on_delete=models.PROTECT, related_name="escrow")
    funder_ref = models.CharField(max_length=120)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="children",
        db_index=False,  # rarely read; resolving an escrow rewrites every index of its row
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    resolution_entry = models.OneToOneField(
        JournalEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["funder_ref", "status"], name="ledger_escrow_funder")]
        constraints = [
            models.UniqueConstraint(fields=["task_ref"], name="ledger_escrow_task_unique"),
            models.CheckConstraint(
                name="ledger_escrow_resolution_consistent",
                condition=(Q(status="open", resolution_entry__isnull=True))
                | (~Q(status="open") & Q(resolution_entry__isnull=False)),
            ),
        ]

    def __str__(self) -> str:
        return f"escrow of {self.task_ref} ({self.status})"


class FailedOperation(models.Model):
    """A debit that failed for want of funds: the key stays failed, a replay gets the same error."""

    idempotency_key = models.CharField(max_length=200)
    fingerprint = models.CharField(max_length=64)
    code = models.CharField(max_length=40)
    detail = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["idempotency_key"], name="ledger_failed_key_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.idempotency_key}: {self.code}"


# --- Stripe purchases -----------------------------------------------------------------------------


class Purchase(models.Model):
    """One attempt to buy credits: a Checkout Session in the browser or an off-session top-up."""

    class Kind(models.TextChoices):
        CHECKOUT = "checkout", "Checkout"
        AUTO_TOPUP = "auto_topup", "Automatic top-up"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PAID = "paid", "Paid and credited"
        FAILED = "failed", "Failed"
        REFUNDED = "refunded", "Refunded"

    owner_ref = models.CharField(max_length=120, db_index=True)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    pack = models.CharField(max_length=20)
    credits = models.BigIntegerField()
    amount_cents = models.PositiveIntegerField()
    currency = models.CharField(max_length=3, default="usd")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    checkout_session_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    payment_intent_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    charge_id = models.CharField(max_length=255, blank=True, db_index=True)
    credit_entry = models.OneToOneField(
        JournalEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    refunded_cents = models.PositiveIntegerField(default=0)
    failure_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="ledger_purchase_credits_positive", condition=Q(credits__gt=0)
            ),
            models.CheckConstraint(
                name="ledger_purchase_refund_within_amount",
                condition=Q(refunded_cents__lte=F("amount_cents")),
            ),
            # At most one automatic top-up in flight per wallet: a burst of low-balance checks
            # charges the card once.
            models.UniqueConstraint(
                fields=["owner_ref"],
                condition=Q(kind="auto_topup", status="pending"),
                name="ledger_one_pending_auto_topup",
            ),
        ]

    def __str__(self) -> str:
        return f"purchase #{self.pk} {self.credits} credits for {self.owner_ref} ({self.status})"


class StripeEvent(models.Model):
    """A webhook event already applied; inserted in the same transaction as its ledger effect."""

    event_id = models.CharField(max_length=255, primary_key=True)
    type = models.CharField(max_length=80)
    created_at_stripe = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)
    outcome = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return f"{self.event_id} {self.type}"


class ChargeDispute(models.Model):
    """A chargeback: how much was taken from the wallet and how much was booked as receivable."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        WON = "won", "Won (credits released)"
        LOST = "lost", "Lost (credits returned to Stripe)"

    dispute_id = models.CharField(max_length=255, unique=True)
    purchase = models.ForeignKey(Purchase, on_delete=models.PROTECT, related_name="disputes")
    amount_credits = models.BigIntegerField()
    from_wallet = models.BigIntegerField()
    from_receivable = models.BigIntegerField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"dispute {self.dispute_id} ({self.status})"


class AutoTopUp(models.Model):
    """Automatic top-up of one wallet from a saved card, off-session, when it runs low."""

    owner_ref = models.CharField(max_length=120, unique=True, help_text="The wallet to top up")
    payer_ref = models.CharField(max_length=120, help_text="Whose card pays (the agent's owner)")
    enabled = models.BooleanField(default=True)
    threshold_credits = models.BigIntegerField()
    pack = models.CharField(max_length=20)
    stripe_customer_id = models.CharField(max_length=255)
    stripe_payment_method_id = models.CharField(max_length=255)
    last_failure = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="ledger_auto_topup_threshold_positive", condition=Q(threshold_credits__gt=0)
            ),
        ]

    def __str__(self) -> str:
        return f"auto top-up of {self.owner_ref}"
