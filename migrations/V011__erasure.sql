-- V011: account erasure (DELETE /profiles/{userId}, docs/api.md "Erasure and export").
-- ProfileDeleted joins the event types. api_erase_profile removes everything of one user in one
-- statement, like every write, and emits ProfileDeleted through api_emit_event (the user's
-- sequence row stays, so numbers never repeat). outbox_erase_user is the relay's half: once
-- ProfileDeleted is published, the user's remaining outbox rows (their payloads hold review
-- text and video ids) and dead letters go.

ALTER TABLE outbox DROP CONSTRAINT outbox_event_type_known;
ALTER TABLE outbox ADD CONSTRAINT outbox_event_type_known CHECK (event_type IN
    ('WatchlistUpdated', 'HistoryUpdated', 'VideoRated', 'ProfileUpdated', 'ProfileDeleted'));

-- ProfileDeleted rows are few and live only until the relay has published them and removed the
-- user's rows (the row itself goes with them): the relay's sweep for an erasure whose removal
-- failed scans this small index instead of the outbox.
CREATE INDEX outbox_profile_deleted_idx ON outbox (partition_no, user_id, seq)
    WHERE event_type = 'ProfileDeleted';

-- DELETE /profiles/{userId}: always 204 (empty body). An event only when something was erased,
-- so a repeat DELETE, or one for a user without data, changes nothing and emits nothing. The
-- user's own idempotency outcomes (caller = the user: they hold response bodies) go too; this
-- request's own outcome (204, empty) is stored afterwards so a retry still replays.
CREATE FUNCTION api_erase_profile(p_caller text, p_idem_key text, p_request_hash bytea,
                                  p_idem_ttl_seconds integer, p_traceparent text,
                                  p_user_id text)
    RETURNS TABLE (status integer, body text, etag text, location text, replayed boolean,
                   seq bigint)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_seq bigint;
    r record;
    v_n bigint := 0;
    v_rows bigint;
BEGIN
    SELECT * INTO r FROM api_idem_check(p_caller, p_idem_key, p_request_hash);
    IF FOUND THEN
        RETURN QUERY SELECT r.status, r.body, r.etag, r.location, r.replayed, NULL::bigint;
        RETURN;
    END IF;
    PERFORM api_lock_user(p_user_id);

    DELETE FROM profiles p WHERE p.user_id = p_user_id;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    v_n := v_n + v_rows;
    DELETE FROM watchlist_items w WHERE w.user_id = p_user_id;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    v_n := v_n + v_rows;
    DELETE FROM history_entries e WHERE e.user_id = p_user_id;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    v_n := v_n + v_rows;
    DELETE FROM resume_points rp WHERE rp.user_id = p_user_id;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    v_n := v_n + v_rows;
    DELETE FROM ratings t WHERE t.user_id = p_user_id;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    v_n := v_n + v_rows;
    DELETE FROM idempotency_keys k WHERE k.caller = p_user_id;

    IF v_n > 0 THEN
        v_seq := api_emit_event(p_user_id, 'ProfileDeleted',
                                '{"userId":' || api_jstr(p_user_id) || '}', p_traceparent);
    END IF;
    PERFORM api_idem_store(p_caller, p_idem_key, p_request_hash, p_idem_ttl_seconds, 204, '',
                           NULL, NULL);
    RETURN QUERY SELECT 204, ''::text, NULL::text, NULL::text, false, v_seq;
END;
$$;

-- The relay, once ProfileDeleted (sequence p_seq) of p_user_id is published: deletes every
-- outbox row of the user up to p_seq (published or held back behind a dead letter) and so, by
-- the foreign key's cascade, the user's dead letters. Rows after p_seq (written after the
-- erasure) stay. Returns how many dead letters and rows went.
CREATE FUNCTION outbox_erase_user(p_user_id text, p_seq bigint)
    RETURNS TABLE (dead_letters bigint, rows bigint)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_dead bigint;
    v_rows bigint;
BEGIN
    SELECT count(*) INTO v_dead FROM outbox_dead_letters d
     WHERE d.user_id = p_user_id AND d.seq <= p_seq;
    DELETE FROM outbox o WHERE o.user_id = p_user_id AND o.seq <= p_seq;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    RETURN QUERY SELECT v_dead, v_rows;
END;
$$;

-- V004's convention: both run as the owner (SECURITY DEFINER, fixed search_path), like the
-- other writes; the role that calls each is granted it and nothing more.
GRANT EXECUTE ON FUNCTION api_erase_profile(text, text, bytea, integer, text, text) TO profile_app;
GRANT EXECUTE ON FUNCTION outbox_erase_user(text, bigint) TO profile_relay;
