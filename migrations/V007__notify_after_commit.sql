-- V007: the relay's wake-up leaves the write transaction (docs/relay.md, docs/performance.md).
--
-- A transaction that calls pg_notify takes a database-wide lock in its pre-commit step and
-- holds it through its commit record's WAL flush, so notifying writers commit one at a time and
-- lose group commit: about half the write rate. The API now sends the hint itself, right after
-- the commit, coalesced per event-loop iteration on a connection of its own (api/data/hint.c).
-- A lost hint (API killed between commit and hint, hint connection down) costs latency up to
-- RELAY_POLL_INTERVAL_MS, never an event: the row is committed and the relay's poll finds it.
--
-- emitted_at: clock_timestamp() when the event is written, the last statement but one of every
-- write function (the Idempotency-Key store follows), so commit -> delivery is measured from
-- just before the commit instead of from the transaction's start. The residual left in the
-- figure is that store plus the commit itself (its WAL flush): tens of microseconds to a
-- millisecond or so under load. NULL for rows written before V007 (the relay falls back to
-- created_at). created_at keeps ce_time's meaning: the write's time, never backwards per user.
ALTER TABLE outbox ADD COLUMN emitted_at timestamptz;

-- V002's function without the pg_notify, plus emitted_at.
CREATE OR REPLACE FUNCTION api_emit_event(p_user_id text, p_event_type text, p_payload text,
                                          p_traceparent text) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
    SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_seq bigint;
    v_at timestamptz;
BEGIN
    INSERT INTO user_event_seq AS s (user_id, last_seq, last_event_at)
    VALUES (p_user_id, 1, now())
    ON CONFLICT (user_id) DO UPDATE
        SET last_seq = s.last_seq + 1, last_event_at = greatest(now(), s.last_event_at)
    RETURNING s.last_seq, s.last_event_at INTO v_seq, v_at;

    INSERT INTO outbox (user_id, seq, event_type, payload, traceparent, created_at, emitted_at)
    VALUES (p_user_id, v_seq, p_event_type, p_payload::json, p_traceparent, v_at,
            clock_timestamp());
    RETURN v_seq;
END;
$$;

-- The API's write statements name the event's partition (outbox_partition) for the hint it
-- sends after the commit; V004's convention: the role that calls a function is granted it.
GRANT EXECUTE ON FUNCTION outbox_partition(text) TO profile_app;
