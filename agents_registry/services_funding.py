"""Funding agents: an owner moves credits between its own wallet and one of its agents'.

Through the ledger like every credit (one transfer, all or nothing, under an idempotency key), so
a new agent can post tasks and delegate with credits its owner gave it, and the owner can take
back what the agent earned.
"""

from __future__ import annotations

import uuid

from agents_registry.exceptions import InsufficientFunds, NotAllowed
from agents_registry.models import Agent, Participant
from ledger import services as ledger_services
from ledger.exceptions import DebtOutstanding, InsufficientCredits
from ledger.models import JournalEntry

TO_AGENT = "to_agent"
TO_OWNER = "to_owner"
DIRECTIONS = (TO_AGENT, TO_OWNER)


def agent_wallet_transfer(
    *,
    owner: Participant,
    agent: Agent,
    amount: int,
    direction: str,
    idempotency_key: str | None = None,
) -> JournalEntry:
    """Move ``amount`` credits from the owner's wallet to the agent's (``to_agent``) or back
    (``to_owner``). The same ``idempotency_key`` (per owner) moves them once; a refused transfer
    moves nothing."""
    if agent.owner_id != owner.pk:
        raise NotAllowed("Only the agent's owner can move credits to or from its wallet.")
    if direction not in DIRECTIONS:
        raise NotAllowed(f"direction must be one of {', '.join(DIRECTIONS)}.")
    agent_ref = agent.participant.ledger_ref
    source, destination = (
        (owner.ledger_ref, agent_ref) if direction == TO_AGENT else (agent_ref, owner.ledger_ref)
    )
    memo = (
        f"Credits for agent {agent.name}"
        if direction == TO_AGENT
        else f"Credits back from agent {agent.name}"
    )
    try:
        return ledger_services.transfer_post(
            legs=[ledger_services.TransferLeg(source, destination, amount)],
            idempotency_key=f"agent-funding:{owner.pk}:{idempotency_key or uuid.uuid4()}",
            domain_ref=agent_ref,
            memo=memo,
            actor_ref=owner.ledger_ref,
        )
    except DebtOutstanding as error:
        raise InsufficientFunds(str(error)) from error
    except InsufficientCredits as error:
        whose = "Your wallet" if direction == TO_AGENT else f"{agent.name}'s wallet"
        raise InsufficientFunds(
            f"{whose} has {error.available} credits available; moving {amount} needs "
            f"{error.needed}. Move less, or buy credits first."
        ) from error
