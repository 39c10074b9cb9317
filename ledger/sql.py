"""The ledger's rules in the database: the posting function and the triggers.

Installed by migration ``0002_database_rules``. Kept here, in one place, so that the migration and
a reader see the same text. Every statement is ``CREATE OR REPLACE``: a change to this text ships
with a new migration that runs it again (an installed database never re-runs 0002).

Lock order (no deadlock between two postings): first the escrow row being resolved, if any; then
every account that may not go negative, in id order (``SELECT ... ORDER BY id FOR UPDATE``); then,
from the transfer trigger, every account whose balance changes, in id order. The platform's own
accounts (fees, clearing, ...) are therefore locked last and held only for the final update and the
commit, which keeps the platform fee account, touched by every settlement, from serialising the
whole posting.
"""

POST_FUNCTION = r"""
CREATE OR REPLACE FUNCTION ledger_post(
    p_key text,
    p_fingerprint text,
    p_reason text,
    p_domain_ref text,
    p_memo text,
    p_actor_ref text,
    p_occurred_at timestamptz,
    p_reverses_id bigint,
    p_debits text[],
    p_credits text[],
    p_amounts bigint[],
    p_escrow_task_ref text,
    p_escrow_status text,
    p_escrow_expected bigint
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_row record;
    v_missing text[];
    v_escrow_id bigint;
    v_escrow_account_id bigint;
    v_escrow_status text;
    v_escrow_balance bigint;
    v_entry_id bigint;
    v_other_escrows boolean;
    v_escrow_row record;
    v_open_ids bigint[];
    v_open_deltas bigint[];
    v_index integer;
    v_guarded_ids bigint[] := '{}';
    v_guarded_deltas bigint[] := '{}';
BEGIN
    -- Requests with one key run one after the other: the second sees what the first committed.
    PERFORM pg_advisory_xact_lock(hashtextextended(p_key, 7));

    SELECT * INTO v_row FROM (
        SELECT id, fingerprint, NULL::text AS code, NULL::jsonb AS detail
            FROM ledger_journalentry WHERE idempotency_key = p_key
        UNION ALL
        SELECT NULL, fingerprint, code, detail FROM ledger_failedoperation
            WHERE idempotency_key = p_key
    ) used LIMIT 1;
    IF FOUND THEN
        IF v_row.fingerprint <> p_fingerprint THEN
            RETURN jsonb_build_object('status', 'conflict', 'entry_id', v_row.id);
        END IF;
        IF v_row.id IS NOT NULL THEN
            RETURN jsonb_build_object('status', 'replayed', 'entry_id', v_row.id);
        END IF;
        RETURN jsonb_build_object('status', 'failed', 'code', v_row.code, 'detail', v_row.detail);
    END IF;

    -- Every account once: which are missing, and the net moves of the platform's accounts (those
    -- that may go negative), which are updated last, in id order.
    SELECT
        array_agg(d.address) FILTER (WHERE a.id IS NULL),
        array_agg(a.id ORDER BY a.id) FILTER (WHERE a.may_go_negative AND d.delta <> 0),
        array_agg(d.delta ORDER BY a.id) FILTER (WHERE a.may_go_negative AND d.delta <> 0)
    INTO v_missing, v_open_ids, v_open_deltas
    FROM (
        SELECT l.address, sum(l.delta) AS delta
        FROM (
            SELECT u.debit AS address, -u.amount AS delta
                FROM unnest(p_debits, p_amounts) AS u(debit, amount)
            UNION ALL
            SELECT u.credit, u.amount FROM unnest(p_credits, p_amounts) AS u(credit, amount)
        ) l
        GROUP BY l.address
    ) d
    LEFT JOIN ledger_account a ON a.address = d.address;
    IF v_missing IS NOT NULL THEN
        RETURN jsonb_build_object('status', 'unknown_accounts', 'addresses', to_jsonb(v_missing));
    END IF;

    IF p_reverses_id IS NOT NULL
       AND EXISTS (SELECT 1 FROM ledger_journalentry WHERE reverses_id = p_reverses_id) THEN
        RETURN jsonb_build_object('status', 'already_reversed');
    END IF;

    IF p_escrow_task_ref IS NOT NULL THEN
        -- The escrow's row lock makes "resolve at most once" a check-and-set, not check-then-act.
        SELECT e.id, e.account_id, e.status
            INTO v_escrow_id, v_escrow_account_id, v_escrow_status
            FROM ledger_escrow e WHERE e.task_ref = p_escrow_task_ref FOR UPDATE;
        IF NOT FOUND THEN
            RETURN jsonb_build_object('status', 'no_escrow');
        END IF;
        IF v_escrow_status <> 'open' THEN
            RETURN jsonb_build_object('status', 'escrow_resolved',
                                      'escrow_status', v_escrow_status);
        END IF;
    END IF;

    -- Does the entry touch an escrow other than the one it resolves? (Decided in memory.)
    v_other_escrows := EXISTS (
        SELECT 1 FROM unnest(p_credits || p_debits) c
        WHERE c LIKE 'escrow:%' AND c IS DISTINCT FROM 'escrow:' || p_escrow_task_ref
    );

    -- Lock every account that may not go negative, in id order, and check its funds.
    FOR v_row IN
        SELECT a.id, a.address, a.balance, d.delta
        FROM ledger_account a
        JOIN (
            SELECT l.address, sum(l.delta) AS delta
            FROM (
                SELECT u.debit AS address, -u.amount AS delta
                    FROM unnest(p_debits, p_amounts) AS u(debit, amount)
                UNION ALL
                SELECT u.credit, u.amount FROM unnest(p_credits, p_amounts) AS u(credit, amount)
            ) l
            GROUP BY l.address
        ) d ON d.address = a.address
        WHERE NOT a.may_go_negative
        ORDER BY a.id
        FOR UPDATE OF a
    LOOP
        IF v_row.delta <> 0 THEN
            v_guarded_ids := v_guarded_ids || v_row.id;
            v_guarded_deltas := v_guarded_deltas || v_row.delta;
        END IF;
        IF v_row.id = v_escrow_account_id THEN
            v_escrow_balance := v_row.balance;
            IF p_escrow_expected IS NOT NULL AND v_escrow_balance <> p_escrow_expected THEN
                RETURN jsonb_build_object('status', 'escrow_balance_changed',
                                          'balance', v_escrow_balance);
            END IF;
        END IF;
        IF v_row.balance + v_row.delta < 0 THEN
            -- An escrow that is empty because it was resolved is not "short of credits".
            IF v_other_escrows THEN
                SELECT e.task_ref, e.status INTO v_escrow_row FROM ledger_escrow e
                    WHERE e.account_id = v_row.id AND e.status <> 'open'
                      AND e.resolution_entry_id IS DISTINCT FROM p_reverses_id;
                IF FOUND THEN
                    RETURN jsonb_build_object('status', 'other_escrow_resolved',
                        'task_ref', v_escrow_row.task_ref, 'escrow_status', v_escrow_row.status);
                END IF;
            END IF;
            -- A failed debit stays failed for its key: a replay gets the same answer.
            INSERT INTO ledger_failedoperation
                (idempotency_key, fingerprint, code, detail, created_at)
            VALUES (p_key, p_fingerprint, 'insufficient_credits',
                    jsonb_build_object('address', v_row.address, 'available', v_row.balance,
                                       'needed', -v_row.delta),
                    now());
            RETURN jsonb_build_object(
                'status', 'failed', 'code', 'insufficient_credits',
                'detail', jsonb_build_object('address', v_row.address, 'available', v_row.balance,
                                             'needed', -v_row.delta));
        END IF;
    END LOOP;

    IF v_escrow_id IS NOT NULL THEN
        IF v_escrow_balance IS NULL THEN
            SELECT balance INTO v_escrow_balance FROM ledger_account WHERE id = v_escrow_account_id;
        END IF;
        IF p_escrow_expected IS NOT NULL AND v_escrow_balance <> p_escrow_expected THEN
            RETURN jsonb_build_object('status', 'escrow_balance_changed',
                                      'balance', v_escrow_balance);
        END IF;
    END IF;

    IF p_reverses_id IS NOT NULL THEN
        -- Reversing the entry that resolved an escrow puts the escrow back in play.
        UPDATE ledger_escrow SET status = 'open', resolution_entry_id = NULL, resolved_at = NULL
            WHERE resolution_entry_id = p_reverses_id;
    END IF;

    -- Money may not flow into or out of an escrow that is already resolved (what went in could
    -- never leave it). Checked after the account locks, so a resolution that was committing is
    -- seen.
    IF v_other_escrows THEN
        SELECT e.task_ref, e.status INTO v_row
            FROM ledger_escrow e JOIN ledger_account a ON a.id = e.account_id
            WHERE a.address = ANY (p_credits || p_debits) AND e.status <> 'open'
              AND e.id IS DISTINCT FROM v_escrow_id
            LIMIT 1;
        IF FOUND THEN
            RETURN jsonb_build_object('status', 'other_escrow_resolved',
                                      'task_ref', v_row.task_ref, 'escrow_status', v_row.status);
        END IF;
    END IF;

    INSERT INTO ledger_journalentry (idempotency_key, fingerprint, reason, domain_ref, memo,
                                     actor_ref, occurred_at, created_at, reverses_id)
    VALUES (p_key, p_fingerprint, p_reason, p_domain_ref, p_memo, p_actor_ref,
            COALESCE(p_occurred_at, now()), now(), p_reverses_id)
    RETURNING id INTO v_entry_id;

    IF v_escrow_id IS NOT NULL THEN
        UPDATE ledger_escrow
            SET status = p_escrow_status, resolution_entry_id = v_entry_id, resolved_at = now()
            WHERE id = v_escrow_id;
    END IF;

    -- The transfers and the balances they move, last, so that the platform's accounts are
    -- locked for as short a time as possible. ``ledger.posting`` tells the triggers that this
    -- function moves the balances itself (it is reset before returning, and rolled back with a
    -- failed statement).
    PERFORM set_config('ledger.posting', 'on', true);
    INSERT INTO ledger_transfer (entry_id, debit_account_id, credit_account_id, amount)
    SELECT v_entry_id, d.id, c.id, l.amount
    FROM unnest(p_debits, p_credits, p_amounts) WITH ORDINALITY AS l(debit, credit, amount, n)
    JOIN ledger_account d ON d.address = l.debit
    JOIN ledger_account c ON c.address = l.credit
    ORDER BY l.n;
    -- Accounts that may not go negative: locked above, in id order; one statement moves them.
    UPDATE ledger_account a SET balance = a.balance + u.delta
        FROM unnest(v_guarded_ids, v_guarded_deltas) AS u(id, delta)
        WHERE a.id = u.id;
    -- Then the platform's, one by one in id order.
    FOR v_index IN 1 .. COALESCE(cardinality(v_open_ids), 0) LOOP
        UPDATE ledger_account SET balance = balance + v_open_deltas[v_index]
            WHERE id = v_open_ids[v_index];
    END LOOP;
    PERFORM set_config('ledger.posting', 'off', true);

    RETURN jsonb_build_object('status', 'posted', 'entry_id', v_entry_id, 'created_at', now(),
                              'occurred_at', COALESCE(p_occurred_at, now()));
END
$$;
"""

TRIGGERS = r"""
-- Balances are updated in place all day long and are not indexed: leave room in each page so that
-- PostgreSQL can update a row without touching its indexes (a HOT update).
ALTER TABLE ledger_account SET (fillfactor = 50);

-- A transfer inserted by any SQL other than ledger_post (which moves the balances itself) moves
-- both cached balances in the same statement, accounts in the ledger's lock order.
CREATE OR REPLACE FUNCTION ledger_transfer_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_row record;
    v_stale boolean;
    v_ids bigint[];
    v_deltas bigint[];
BEGIN
    -- One query reads the inserted transfers (a query on the transition table is planned on
    -- every call; the statements below are planned once).
    SELECT
        EXISTS (
            SELECT 1 FROM (SELECT DISTINCT entry_id FROM new_transfers) t
            JOIN ledger_journalentry e ON e.id = t.entry_id
            WHERE e.created_at <> now()
        ),
        array_agg(d.account_id ORDER BY d.account_id),
        array_agg(d.delta ORDER BY d.account_id)
    INTO v_stale, v_ids, v_deltas
    FROM (
        SELECT account_id, sum(delta) AS delta FROM (
            SELECT debit_account_id AS account_id, -amount AS delta FROM new_transfers
            UNION ALL
            SELECT credit_account_id, amount FROM new_transfers
        ) moves GROUP BY account_id
    ) d
    WHERE d.delta <> 0;
    -- Transfers may be added only to an entry written in this transaction: an entry, once
    -- committed, is complete.
    IF v_stale THEN
        RAISE EXCEPTION 'ledger: transfers can only be added to an entry in the transaction that '
                        'wrote it';
    END IF;
    IF v_ids IS NULL THEN
        RETURN NULL;
    END IF;
    -- Accounts that may not go negative first, in one statement: ledger_post already holds
    -- their locks, taken in id order. Then the others (the platform's), one by one in id order:
    -- the lock order of the whole ledger, with the hot platform accounts held the shortest.
    UPDATE ledger_account a SET balance = a.balance + u.delta
        FROM unnest(v_ids, v_deltas) AS u(id, delta)
        WHERE a.id = u.id AND NOT a.may_go_negative;
    FOR v_row IN
        SELECT u.id, u.delta FROM unnest(v_ids, v_deltas) AS u(id, delta)
        JOIN ledger_account a ON a.id = u.id AND a.may_go_negative
        ORDER BY u.id
    LOOP
        UPDATE ledger_account SET balance = balance + v_row.delta WHERE id = v_row.id;
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER ledger_transfer_apply
    AFTER INSERT ON ledger_transfer
    REFERENCING NEW TABLE AS new_transfers
    FOR EACH STATEMENT
    WHEN (current_setting('ledger.posting', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION ledger_transfer_apply();

-- An account's identity never changes, and its balance changes only with transfers: from
-- ledger_post, or from the trigger above. The checks run in the triggers' WHEN clauses, so an
-- allowed update calls no function at all.
CREATE OR REPLACE FUNCTION ledger_account_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'ledger: accounts cannot be deleted (account %)', OLD.address;
    END IF;
    IF NEW.balance <> OLD.balance THEN
        RAISE EXCEPTION 'ledger: the balance of account % changes only through transfers',
            OLD.address;
    END IF;
    RAISE EXCEPTION 'ledger: the identity of account % cannot change', OLD.address;
END
$$;

CREATE TRIGGER ledger_account_guard
    BEFORE UPDATE ON ledger_account
    FOR EACH ROW
    WHEN (
        NEW.id <> OLD.id OR NEW.address <> OLD.address OR NEW.kind <> OLD.kind
        OR NEW.owner_ref <> OLD.owner_ref OR NEW.may_go_negative <> OLD.may_go_negative
        OR NEW.created_at <> OLD.created_at
        OR (NEW.balance <> OLD.balance AND pg_trigger_depth() = 0
            AND current_setting('ledger.posting', true) IS DISTINCT FROM 'on')
    )
    EXECUTE FUNCTION ledger_account_guard();
CREATE TRIGGER ledger_account_undeletable
    BEFORE DELETE ON ledger_account
    FOR EACH ROW EXECUTE FUNCTION ledger_account_guard();

-- History is append-only: corrections are new, reversing entries.
CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger: % is append-only (% refused)', TG_TABLE_NAME, TG_OP;
END
$$;

CREATE TRIGGER ledger_journalentry_append_only
    BEFORE UPDATE OR DELETE ON ledger_journalentry
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_transfer_append_only
    BEFORE UPDATE OR DELETE ON ledger_transfer
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_failedoperation_append_only
    BEFORE UPDATE OR DELETE ON ledger_failedoperation
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

-- At commit, every entry has transfers (only the resolution of an empty escrow has none).
CREATE OR REPLACE FUNCTION ledger_entry_complete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ledger_transfer WHERE entry_id = NEW.id)
       AND NOT EXISTS (SELECT 1 FROM ledger_escrow WHERE resolution_entry_id = NEW.id) THEN
        RAISE EXCEPTION 'ledger: journal entry % has no transfers', NEW.id;
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER ledger_entry_complete
    AFTER INSERT ON ledger_journalentry
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_complete();
"""

REVERSE = r"""
ALTER TABLE ledger_account RESET (fillfactor);
DROP TRIGGER IF EXISTS ledger_entry_complete ON ledger_journalentry;
DROP TRIGGER IF EXISTS ledger_failedoperation_append_only ON ledger_failedoperation;
DROP TRIGGER IF EXISTS ledger_transfer_append_only ON ledger_transfer;
DROP TRIGGER IF EXISTS ledger_journalentry_append_only ON ledger_journalentry;
DROP TRIGGER IF EXISTS ledger_account_undeletable ON ledger_account;
DROP TRIGGER IF EXISTS ledger_account_guard ON ledger_account;
DROP TRIGGER IF EXISTS ledger_transfer_apply ON ledger_transfer;
DROP FUNCTION IF EXISTS ledger_entry_complete();
DROP FUNCTION IF EXISTS ledger_refuse_change();
DROP FUNCTION IF EXISTS ledger_account_guard();
DROP FUNCTION IF EXISTS ledger_transfer_apply();
DROP FUNCTION IF EXISTS ledger_post(text, text, text, text, text, text, timestamptz, bigint,
    text[], text[], bigint[], text, text, bigint);
"""
