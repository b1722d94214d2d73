-- V002: the SQL interface of profile-api (docs/sql-api.md). Each write function is one
-- statement, so one transaction in autocommit: domain change + per-user sequence bump + outbox
-- row + NOTIFY + idempotency record commit together or not at all. Each returns one row
-- (status, body, etag, location, replayed, seq); seq is the event sequence the write produced
-- (the user's new cache version), NULL when it wrote no event (no-op, error, replay).
--
-- Locks, in the order a write takes them (so one user's writers never deadlock):
--   1. pg_try_advisory_xact_lock(hashtextextended(caller || ' ' || key, 0)) (bigint key space):
--      an idempotency key in flight, never waited for (409 instead).
--   2. pg_advisory_xact_lock(7301, hashtext(user_id)) (two-int key space, class 7301): one
--      user's writers queue here before they read the state they decide on (watchlist size,
--      profile version), so checks such as the 1000-item limit hold under concurrency.
--   3. the user_event_seq row lock taken by the bump: held to commit, so for one user the
--      sequence order is the commit order.
--
-- search_path: every PL/pgSQL function sets it. The small helpers use SQL-standard bodies
-- (RETURN ...), whose names are resolved once, when the function is created, so the caller's
-- search_path cannot redirect them; leaving SET off lets the planner inline them into the
-- list queries (a SET clause forbids inlining and costs a GUC save/restore per row).

-- RFC 3339 UTC with milliseconds: 2026-11-25T22:29:14.123Z
CREATE FUNCTION api_ts(p_ts timestamptz) RETURNS text
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    RETURN to_char(p_ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');

-- Keyset sort key as microseconds since the epoch (numeric extract: exact).
CREATE FUNCTION api_ts_us(p_ts timestamptz) RETURNS bigint
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    RETURN (extract(epoch FROM p_ts) * 1000000)::bigint;

-- A JSON string literal, or null.
CREATE FUNCTION api_jstr(p_s text) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN coalesce(to_json(p_s)::text, 'null');

-- Problem body in the shape api/problem.c renders.
CREATE FUNCTION api_problem(p_status integer, p_slug text, p_title text, p_detail text)
    RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN '{"type":' || to_json('/problems/' || p_slug)::text || ',"title":' ||
           to_json(p_title)::text || ',"status":' || p_status::text || ',"detail":' ||
           to_json(p_detail)::text || '}';

-- Resource bodies (docs/openapi.yaml), members in the documented order.
CREATE FUNCTION api_json_profile(p profiles) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN '{"userId":' || api_jstr(p.user_id) || ',"displayName":' || api_jstr(p.display_name) ||
           ',"avatarUrl":' || api_jstr(p.avatar_url) || ',"preferences":' ||
           p.preferences::text || ',"version":' || p.version::text || ',"createdAt":"' ||
           api_ts(p.created_at) || '","updatedAt":"' || api_ts(p.updated_at) || '"}';

CREATE FUNCTION api_json_watch(p_video_id text, p_added_at timestamptz) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN '{"videoId":' || api_jstr(p_video_id) || ',"addedAt":"' || api_ts(p_added_at) || '"}';

CREATE FUNCTION api_json_history(p_entry_id uuid, p_video_id text, p_position integer,
                                 p_duration integer, p_watched_at timestamptz) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN '{"entryId":"' || p_entry_id::text || '","videoId":' || api_jstr(p_video_id) ||
           ',"positionSeconds":' || p_position::text || ',"durationSeconds":' ||
           coalesce(p_duration::text, 'null') || ',"watchedAt":"' || api_ts(p_watched_at) || '"}';

CREATE FUNCTION api_json_rating(p_video_id text, p_rating smallint, p_review text,
                                p_created_at timestamptz, p_updated_at timestamptz) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN '{"videoId":' || api_jstr(p_video_id) || ',"rating":' || p_rating::text ||
           ',"review":' || api_jstr(p_review) || ',"createdAt":"' || api_ts(p_created_at) ||
           '","updatedAt":"' || api_ts(p_updated_at) || '"}';

-- Idempotency, steps 2 and 3 of docs/sql-api.md. Returns no row when the caller should do the
-- work (no key, or no live record), else the row to answer with: 409 in flight, 422 mismatch,
-- or the stored outcome with replayed = true.
CREATE FUNCTION api_idem_check(p_caller text, p_idem_key text, p_request_hash bytea)
    RETURNS TABLE (status integer, body text, etag text, location text, replayed boolean,
                   seq bigint)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
    SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    r idempotency_keys%ROWTYPE;
BEGIN
    IF p_idem_key IS NULL THEN
        RETURN;
    END IF;
    IF p_request_hash IS NULL OR octet_length(p_request_hash) <> 32 THEN
        RAISE EXCEPTION 'request hash must be 32 bytes when an idempotency key is given'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT pg_try_advisory_xact_lock(hashtextextended(p_caller || ' ' || p_idem_key, 0)) THEN
        RETURN QUERY SELECT 409, api_problem(409, 'idempotency-key-in-use', 'Conflict',
            'A request with this Idempotency-Key is still being processed.'),
            NULL::text, NULL::text, false, NULL::bigint;
        RETURN;
    END IF;
    SELECT * INTO r FROM idempotency_keys k
     WHERE k.caller = p_caller AND k.idem_key = p_idem_key AND k.expires_at > now();
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF r.request_hash <> p_request_hash THEN
        RETURN QUERY SELECT 422, api_problem(422, 'idempotency-key-mismatch',
            'Unprocessable Content',
            'This Idempotency-Key was used with a different request.'),
            NULL::text, NULL::text, false, NULL::bigint;
        RETURN;
    END IF;
    RETURN QUERY SELECT r.status::integer, r.response_body, r.etag, r.location, true, NULL::bigint;
END;
$$;

-- Idempotency, step 4: stores the outcome (an expired record under the same key is replaced).
CREATE FUNCTION api_idem_store(p_caller text, p_idem_key text, p_request_hash bytea,
                               p_ttl_seconds integer, p_status integer, p_body text,
                               p_etag text, p_location text) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
    SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF p_idem_key IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO idempotency_keys AS k (caller, idem_key, request_hash, status, response_body,
                                       etag, location, created_at, expires_at)
    VALUES (p_caller, p_idem_key, p_request_hash, p_status, p_body, p_etag, p_location, now(),
            now() + make_interval(secs => greatest(p_ttl_seconds, 1)))
    ON CONFLICT (caller, idem_key) DO UPDATE
        SET request_hash = EXCLUDED.request_hash, status = EXCLUDED.status,
            response_body = EXCLUDED.response_body, etag = EXCLUDED.etag,
            location = EXCLUDED.location, created_at = EXCLUDED.created_at,
            expires_at = EXCLUDED.expires_at;
END;
$$;

-- Queues one user's writers (lock 2 above).
CREATE FUNCTION api_lock_user(p_user_id text) RETURNS void
    LANGUAGE sql VOLATILE SECURITY INVOKER
    RETURN pg_advisory_xact_lock(7301, hashtext(p_user_id));

-- Bumps the user's sequence, writes the outbox row and wakes relays. Returns the sequence.
-- created_at = greatest(now(), last_event_at): ce_time never goes backwards for one user.
CREATE FUNCTION api_emit_event(p_user_id text, p_event_type text, p_payload text,
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

    INSERT INTO outbox (user_id, seq, event_type, payload, traceparent, created_at)
    VALUES (p_user_id, v_seq, p_event_type, p_payload::json, p_traceparent, v_at);

    PERFORM pg_notify('outbox_new', outbox_partition(p_user_id)::text);
    RETURN v_seq;
END;
$$;

-- If-Match against the current version (RFC 9110 section 13.1.1): "*" matches any current
-- representation; otherwise a comma list of entity tags compared with the strong function, so
-- a weak tag (W/"3") never matches. A malformed header matches nothing.
CREATE FUNCTION api_if_match(p_if_match text, p_version bigint) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE SECURITY INVOKER
    SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_tag text[];
BEGIN
    IF p_if_match IS NULL THEN
        RETURN true;
    END IF;
    IF btrim(p_if_match, E' \t') = '*' THEN
        RETURN p_version IS NOT NULL;
    END IF;
    IF p_version IS NULL THEN
        RETURN false;
    END IF;
    FOR v_tag IN SELECT m FROM regexp_matches(p_if_match, '(W/)?"([^"]*)"', 'g') AS m LOOP
        IF v_tag[1] IS NULL AND v_tag[2] = p_version::text THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
END;
$$;

-- PUT /profiles/{userId}: full replace. 201 + Location when created, 200 when replaced,
-- 412 when If-Match fails (any If-Match on a missing profile). Every success bumps version and
-- emits ProfileUpdated.
CREATE FUNCTION api_put_profile(p_caller text, p_idem_key text, p_request_hash bytea,
                                p_idem_ttl_seconds integer, p_traceparent text,
                                p_user_id text, p_display_name text, p_avatar_url text,
                                p_preferences jsonb, p_if_match text)
    RETURNS TABLE (status integer, body text, etag text, location text, replayed boolean,
                   seq bigint)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
    SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_seq bigint;
    r record;
    v_cur profiles%ROWTYPE;
    v_new profiles%ROWTYPE;
    v_status integer;
    v_body text;
    v_etag text;
    v_location text;
BEGIN
    SELECT * INTO r FROM api_idem_check(p_caller, p_idem_key, p_request_hash);
    IF FOUND THEN
        RETURN QUERY SELECT r.status, r.body, r.etag, r.location, r.replayed, NULL::bigint;
        RETURN;
    END IF;
    PERFORM api_lock_user(p_user_id);

    SELECT * INTO v_cur FROM profiles p WHERE p.user_id = p_user_id FOR UPDATE;
    IF NOT api_if_match(p_if_match, v_cur.version) THEN
        v_status := 412;
        v_body := api_problem(412, 'precondition-failed', 'Precondition Failed',
                              CASE WHEN v_cur.user_id IS NULL
                                   THEN 'The profile does not exist.'
                                   ELSE 'If-Match does not match the current version.' END);
    ELSIF v_cur.user_id IS NULL THEN
        INSERT INTO profiles AS p (user_id, display_name, avatar_url, preferences, version,
                                   created_at, updated_at)
        VALUES (p_user_id, p_display_name, p_avatar_url, coalesce(p_preferences, '{}'::jsonb),
                1, now(), now())
        RETURNING p.* INTO v_new;
        v_status := 201;
        v_location := '/profiles/' || p_user_id;
    ELSE
        UPDATE profiles AS p
           SET display_name = p_display_name, avatar_url = p_avatar_url,
               preferences = coalesce(p_preferences, '{}'::jsonb), version = p.version + 1,
               updated_at = greatest(now(), p.updated_at)
         WHERE p.user_id = p_user_id
        RETURNING p.* INTO v_new;
        v_status := 200;
    END IF;

    IF v_status < 300 THEN
        v_body := api_json_profile(v_new);
        v_etag := '"' || v_new.version::text || '"';
        v_seq := api_emit_event(p_user_id, 'ProfileUpdated',
            '{"userId":' || api_jstr(p_user_id) || ',"version":' || v_new.version::text || '}',
            p_traceparent);
    END IF;
    PERFORM api_idem_store(p_caller, p_idem_key, p_request_hash, p_idem_ttl_seconds, v_status,
                           v_body, v_etag, v_location);
    RETURN QUERY SELECT v_status, v_body, v_etag, v_location, false, v_seq;
END;
$$;

-- POST /profiles/{userId}/watchlist: 201 added (event), 200 already there (no event, no
-- sequence bump), 409 watchlist-full at 1000 items.
CREATE FUNCTION api_watchlist_add(p_caller text, p_idem_key text, p_request_hash bytea,
                                  p_idem_ttl_seconds integer, p_traceparent text,
                                  p_user_id text, p_video_id text)
    RETURNS TABLE (status integer, body text, etag text, location text, replayed boolean,
                   seq bigint)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
    SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_seq bigint;
    r record;
    v_added_at timestamptz;
    v_count bigint;
    v_status integer;
    v_body text;
BEGIN
    SELECT * INTO r FROM api_idem_check(p_caller, p_idem_key, p_request_hash);
    IF FOUND THEN
        RETURN QUERY SELECT r.status, r.body, r.etag, r.location, r.replayed, NULL::bigint;
        RETURN;
    END IF;
    PERFORM api_lock_user(p_user_id);

    SELECT w.added_at INTO v_added_at FROM watchlist_items w
     WHERE w.user_id = p_user_id AND w.video_id = p_video_id;
    IF FOUND THEN
        v_status := 200;
        v_body := api_json_watch(p_video_id, v_added_at);
    ELSE
        SELECT count(*) INTO v_count FROM watchlist_items w WHERE w.user_id = p_user_id;
        IF v_count >= 1000 THEN
            v_status := 409;
            v_body := api_problem(409, 'watchlist-full', 'Conflict',
                                  'The watchlist already holds 1000 items.');
        ELSE
            INSERT INTO watchlist_items AS w (user_id, video_id, added_at)
            VALUES (p_user_id, p_video_id, now())
            RETURNING w.added_at INTO v_added_at;
            v_status := 201;
            v_body := api_json_watch(p_video_id, v_added_at);
            v_seq := api_emit_event(p_user_id, 'WatchlistUpdated',
                '{"userId":' || api_jstr(p_user_id) || ',"videoId":' || api_jstr(p_video_id) ||
                ',"action":"added"}', p_traceparent);
        END IF;
    END IF;
    PERFORM api_idem_store(p_caller, p_idem_key, p_request_hash, p_idem_ttl_seconds, v_status,
                           v_body, NULL, NULL);
    RETURN QUERY SELECT v_status, v_body, NULL::text, NULL::text, false, v_seq;
END;
$$;

-- DELETE /profiles/{userId}/watchlist/{videoId}: always 204; an event only when a row went.
CREATE FUNCTION api_watchlist_remove(p_caller text, p_idem_key text, p_request_hash bytea,
                                     p_idem_ttl_seconds integer, p_traceparent text,
                                     p_user_id text, p_video_id text)
    RETURNS TABLE (status integer, body text, etag text, location text, replayed boolean,
                   seq bigint)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
    SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_seq bigint;
    r record;
BEGIN
    SELECT * INTO r FROM api_idem_check(p_caller, p_idem_key, p_request_hash);
    IF FOUND THEN
        RETURN QUERY SELECT r.status, r.body, r.etag, r.location, r.replayed, NULL::bigint;
        RETURN;
    END IF;
    PERFORM api_lock_user(p_user_id);

    DELETE FROM watchlist_items w WHERE w.user_id = p_user_id AND w.video_id = p_video_id;
    IF FOUND THEN
        v_seq := api_emit_event(p_user_id, 'WatchlistUpdated',
            '{"userId":' || api_jstr(p_user_id) || ',"videoId":' || api_jstr(p_video_id) ||
            ',"action":"removed"}', p_traceparent);
    END IF;
    PERFORM api_idem_store(p_caller, p_idem_key, p_request_hash, p_idem_ttl_seconds, 204, '',
                           NULL, NULL);
    RETURN QUERY SELECT 204, ''::text, NULL::text, NULL::text, false, v_seq;
END;
$$;

-- POST /profiles/{userId}/history: appends one entry (201) and emits HistoryUpdated.
CREATE FUNCTION api_history_add(p_caller text, p_idem_key text, p_request_hash bytea,
                                p_idem_ttl_seconds integer, p_traceparent text,
                                p_user_id text, p_video_id text, p_position integer,
                                p_duration integer, p_watched_at timestamptz)
    RETURNS TABLE (status integer, body text, etag text, location text, replayed boolean,
                   seq bigint)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
    SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_seq bigint;
    r record;
    h history_entries%ROWTYPE;
    v_body text;
BEGIN
    SELECT * INTO r FROM api_idem_check(p_caller, p_idem_key, p_request_hash);
    IF FOUND THEN
        RETURN QUERY SELECT r.status, r.body, r.etag, r.location, r.replayed, NULL::bigint;
        RETURN;
    END IF;
    PERFORM api_lock_user(p_user_id);

    INSERT INTO history_entries AS e (user_id, video_id, position_seconds, duration_seconds,
                                      watched_at)
    VALUES (p_user_id, p_video_id, p_position, p_duration, coalesce(p_watched_at, now()))
    RETURNING e.* INTO h;
    v_body := api_json_history(h.entry_id, h.video_id, h.position_seconds, h.duration_seconds,
                               h.watched_at);
    v_seq := api_emit_event(p_user_id, 'HistoryUpdated',
        '{"userId":' || api_jstr(p_user_id) || ',"videoId":' || api_jstr(h.video_id) ||
        ',"positionSeconds":' || h.position_seconds::text || ',"durationSeconds":' ||
        coalesce(h.duration_seconds::text, 'null') || ',"watchedAt":"' || api_ts(h.watched_at) ||
        '"}', p_traceparent);
    PERFORM api_idem_store(p_caller, p_idem_key, p_request_hash, p_idem_ttl_seconds, 201, v_body,
                           NULL, NULL);
    RETURN QUERY SELECT 201, v_body, NULL::text, NULL::text, false, v_seq;
END;
$$;

-- POST /profiles/{userId}/ratings: one rating per user and video; 201 new, 200 replaced.
-- Both emit VideoRated.
CREATE FUNCTION api_rating_put(p_caller text, p_idem_key text, p_request_hash bytea,
                               p_idem_ttl_seconds integer, p_traceparent text,
                               p_user_id text, p_video_id text, p_rating integer,
                               p_review text)
    RETURNS TABLE (status integer, body text, etag text, location text, replayed boolean,
                   seq bigint)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
    SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_seq bigint;
    r record;
    t ratings%ROWTYPE;
    v_inserted boolean;
    v_status integer;
    v_body text;
BEGIN
    SELECT * INTO r FROM api_idem_check(p_caller, p_idem_key, p_request_hash);
    IF FOUND THEN
        RETURN QUERY SELECT r.status, r.body, r.etag, r.location, r.replayed, NULL::bigint;
        RETURN;
    END IF;
    PERFORM api_lock_user(p_user_id);

    -- Under the user lock no other API writer changes this user's ratings meanwhile.
    PERFORM 1 FROM ratings x WHERE x.user_id = p_user_id AND x.video_id = p_video_id;
    v_inserted := NOT FOUND;
    INSERT INTO ratings AS x (user_id, video_id, rating, review, created_at, updated_at)
    VALUES (p_user_id, p_video_id, p_rating, p_review, now(), now())
    ON CONFLICT (user_id, video_id) DO UPDATE
        SET rating = EXCLUDED.rating, review = EXCLUDED.review,
            updated_at = greatest(now(), x.updated_at)
    RETURNING x.user_id, x.video_id, x.rating, x.review, x.created_at, x.updated_at
         INTO t.user_id, t.video_id, t.rating, t.review, t.created_at, t.updated_at;
    v_status := CASE WHEN v_inserted THEN 201 ELSE 200 END;
    v_body := api_json_rating(t.video_id, t.rating, t.review, t.created_at, t.updated_at);
    v_seq := api_emit_event(p_user_id, 'VideoRated',
        '{"userId":' || api_jstr(p_user_id) || ',"videoId":' || api_jstr(t.video_id) ||
        ',"rating":' || t.rating::text || ',"review":' || api_jstr(t.review) || '}',
        p_traceparent);
    PERFORM api_idem_store(p_caller, p_idem_key, p_request_hash, p_idem_ttl_seconds, v_status,
                           v_body, NULL, NULL);
    RETURN QUERY SELECT v_status, v_body, NULL::text, NULL::text, false, v_seq;
END;
$$;

-- GET /profiles/{userId}: 200 + profile + ETag, or 404.
CREATE FUNCTION api_get_profile(p_user_id text)
    RETURNS TABLE (status integer, body text, etag text)
    LANGUAGE plpgsql STABLE SECURITY INVOKER
    SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    p profiles%ROWTYPE;
BEGIN
    SELECT * INTO p FROM profiles x WHERE x.user_id = p_user_id;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 404, api_problem(404, 'not-found', 'Not Found',
                                             'The profile does not exist.'), NULL::text;
        RETURN;
    END IF;
    RETURN QUERY SELECT 200, api_json_profile(p), '"' || p.version::text || '"';
END;
$$;

CREATE FUNCTION api_check_limit(p_limit integer) RETURNS void
    LANGUAGE plpgsql IMMUTABLE SECURITY INVOKER
    SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 1000 THEN
        RAISE EXCEPTION 'limit must be from 1 to 1000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
END;
$$;

-- Lists: one statement each, so the rows and `version` come from one snapshot. The page holds
-- p_limit rows; one more is fetched to know whether a next page exists.
CREATE FUNCTION api_list_watchlist(p_user_id text, p_limit integer, p_after_ts timestamptz,
                                   p_after_id text)
    RETURNS TABLE (items text, next_ts_us bigint, next_id text, version bigint)
    LANGUAGE plpgsql STABLE SECURITY INVOKER
    SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    PERFORM api_check_limit(p_limit);
    RETURN QUERY
    WITH page AS (
        SELECT w.video_id, w.added_at,
               row_number() OVER (ORDER BY w.added_at DESC, w.video_id DESC) AS n
          FROM (SELECT * FROM watchlist_items w0
                 WHERE w0.user_id = p_user_id
                   AND (p_after_ts IS NULL OR (w0.added_at, w0.video_id) < (p_after_ts, p_after_id))
                 ORDER BY w0.added_at DESC, w0.video_id DESC
                 LIMIT p_limit + 1) w
    )
    SELECT '[' || coalesce(string_agg(api_json_watch(pg.video_id, pg.added_at), ','
                                      ORDER BY pg.n) FILTER (WHERE pg.n <= p_limit), '') || ']',
           CASE WHEN count(*) > p_limit
                THEN api_ts_us(max(pg.added_at) FILTER (WHERE pg.n = p_limit)) END,
           CASE WHEN count(*) > p_limit THEN max(pg.video_id) FILTER (WHERE pg.n = p_limit) END,
           coalesce((SELECT s.last_seq FROM user_event_seq s WHERE s.user_id = p_user_id), 0)
      FROM page pg;
END;
$$;

CREATE FUNCTION api_list_history(p_user_id text, p_limit integer, p_after_ts timestamptz,
                                 p_after_id text, p_continue boolean)
    RETURNS TABLE (items text, next_ts_us bigint, next_id text, version bigint)
    LANGUAGE plpgsql STABLE SECURITY INVOKER
    SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_after_id uuid := p_after_id::uuid;
BEGIN
    PERFORM api_check_limit(p_limit);
    IF coalesce(p_continue, false) THEN
        RETURN QUERY
        WITH latest AS (
            -- per video the latest entry (history_entries_user_video_watched_idx)
            SELECT DISTINCT ON (e.video_id) e.*
              FROM history_entries e
             WHERE e.user_id = p_user_id
             ORDER BY e.video_id, e.watched_at DESC, e.entry_id DESC
        ), page AS (
            SELECT l.*, row_number() OVER (ORDER BY l.watched_at DESC, l.entry_id DESC) AS n
              FROM (SELECT * FROM latest l0
                     WHERE (l0.duration_seconds IS NULL
                            OR l0.position_seconds < l0.duration_seconds)
                       AND (p_after_ts IS NULL
                            OR (l0.watched_at, l0.entry_id) < (p_after_ts, v_after_id))
                     ORDER BY l0.watched_at DESC, l0.entry_id DESC
                     LIMIT p_limit + 1) l
        )
        SELECT '[' || coalesce(string_agg(api_json_history(pg.entry_id, pg.video_id,
                                              pg.position_seconds, pg.duration_seconds,
                                              pg.watched_at), ',' ORDER BY pg.n)
                                   FILTER (WHERE pg.n <= p_limit), '') || ']',
               CASE WHEN count(*) > p_limit
                    THEN api_ts_us(max(pg.watched_at) FILTER (WHERE pg.n = p_limit)) END,
               CASE WHEN count(*) > p_limit
                    THEN max(pg.entry_id::text) FILTER (WHERE pg.n = p_limit) END,
               coalesce((SELECT s.last_seq FROM user_event_seq s WHERE s.user_id = p_user_id), 0)
          FROM page pg;
    ELSE
        RETURN QUERY
        WITH page AS (
            SELECT e.*, row_number() OVER (ORDER BY e.watched_at DESC, e.entry_id DESC) AS n
              FROM (SELECT * FROM history_entries e0
                     WHERE e0.user_id = p_user_id
                       AND (p_after_ts IS NULL
                            OR (e0.watched_at, e0.entry_id) < (p_after_ts, v_after_id))
                     ORDER BY e0.watched_at DESC, e0.entry_id DESC
                     LIMIT p_limit + 1) e
        )
        SELECT '[' || coalesce(string_agg(api_json_history(pg.entry_id, pg.video_id,
                                              pg.position_seconds, pg.duration_seconds,
                                              pg.watched_at), ',' ORDER BY pg.n)
                                   FILTER (WHERE pg.n <= p_limit), '') || ']',
               CASE WHEN count(*) > p_limit
                    THEN api_ts_us(max(pg.watched_at) FILTER (WHERE pg.n = p_limit)) END,
               CASE WHEN count(*) > p_limit
                    THEN max(pg.entry_id::text) FILTER (WHERE pg.n = p_limit) END,
               coalesce((SELECT s.last_seq FROM user_event_seq s WHERE s.user_id = p_user_id), 0)
          FROM page pg;
    END IF;
END;
$$;

CREATE FUNCTION api_list_ratings(p_user_id text, p_limit integer, p_after_ts timestamptz,
                                 p_after_id text, p_video_id text)
    RETURNS TABLE (items text, next_ts_us bigint, next_id text, version bigint)
    LANGUAGE plpgsql STABLE SECURITY INVOKER
    SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    PERFORM api_check_limit(p_limit);
    RETURN QUERY
    WITH page AS (
        SELECT x.*, row_number() OVER (ORDER BY x.updated_at DESC, x.video_id DESC) AS n
          FROM (SELECT * FROM ratings r0
                 WHERE r0.user_id = p_user_id
                   AND (p_video_id IS NULL OR r0.video_id = p_video_id)
                   AND (p_after_ts IS NULL OR (r0.updated_at, r0.video_id) < (p_after_ts, p_after_id))
                 ORDER BY r0.updated_at DESC, r0.video_id DESC
                 LIMIT p_limit + 1) x
    )
    SELECT '[' || coalesce(string_agg(api_json_rating(pg.video_id, pg.rating, pg.review,
                                                      pg.created_at, pg.updated_at), ','
                                      ORDER BY pg.n) FILTER (WHERE pg.n <= p_limit), '') || ']',
           CASE WHEN count(*) > p_limit
                THEN api_ts_us(max(pg.updated_at) FILTER (WHERE pg.n = p_limit)) END,
           CASE WHEN count(*) > p_limit THEN max(pg.video_id) FILTER (WHERE pg.n = p_limit) END,
           coalesce((SELECT s.last_seq FROM user_event_seq s WHERE s.user_id = p_user_id), 0)
      FROM page pg;
END;
$$;

-- Deletes up to p_batch expired idempotency records (idempotency_keys_expires_idx); returns
-- how many. SKIP LOCKED lets several API processes run it at once without waiting.
CREATE FUNCTION api_idempotency_cleanup(p_batch integer) RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
    SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_n integer;
BEGIN
    DELETE FROM idempotency_keys k
     USING (SELECT k0.caller, k0.idem_key FROM idempotency_keys k0
             WHERE k0.expires_at <= now()
             ORDER BY k0.expires_at
             LIMIT greatest(coalesce(p_batch, 0), 0)
             FOR UPDATE SKIP LOCKED) d
     WHERE k.caller = d.caller AND k.idem_key = d.idem_key;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END;
$$;

-- Highest applied migration version (readiness check); 0 when the history table is absent
-- (a database not migrated by profile-migrate).
CREATE FUNCTION schema_version() RETURNS integer
    LANGUAGE plpgsql STABLE SECURITY INVOKER
    SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v integer;
BEGIN
    IF to_regclass('schema_migrations') IS NULL THEN
        RETURN 0;
    END IF;
    EXECUTE 'SELECT coalesce(max(version), 0) FROM schema_migrations' INTO v;
    RETURN v;
END;
$$;
