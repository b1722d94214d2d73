-- V003: list pages as plain rows (docs/sql-api.md). The API renders the JSON itself from a
-- binary result, so a page costs PostgreSQL one index range scan instead of per-row to_char,
-- to_json and string_agg. The continue view gets its own table, resume_points, kept by
-- api_history_add, so it no longer scans all of a user's history with DISTINCT ON.
--
-- The page functions are LANGUAGE sql with SQL-standard bodies (BEGIN ATOMIC): names are bound
-- when the function is created (no SET search_path needed) and the planner inlines the single
-- SELECT into the caller's prepared statement, so the keyset becomes an index condition.

-- view=continue: per (user, video) the latest history entry by (watched_at, entry_id).
CREATE TABLE resume_points (
    user_id          text        NOT NULL,
    video_id         text        NOT NULL,
    entry_id         uuid        NOT NULL,
    position_seconds integer     NOT NULL,
    duration_seconds integer,
    watched_at       timestamptz NOT NULL,
    CONSTRAINT resume_points_pkey PRIMARY KEY (user_id, video_id),
    CONSTRAINT resume_points_user_id_format CHECK (user_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    CONSTRAINT resume_points_video_id_format CHECK (video_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    CONSTRAINT resume_points_position_range CHECK (position_seconds BETWEEN 0 AND 86400),
    CONSTRAINT resume_points_duration_range
        CHECK (duration_seconds IS NULL OR duration_seconds BETWEEN 0 AND 86400),
    CONSTRAINT resume_points_position_within_duration
        CHECK (duration_seconds IS NULL OR position_seconds <= duration_seconds)
);
-- Keyset pagination of the unfinished ones, newest first: (watched_at, entry_id) DESC. The
-- other columns of a page ride along (INCLUDE), so a page is an index-only scan: a user's
-- points are written over months and would otherwise cost one heap page each.
CREATE INDEX resume_points_user_unfinished_idx
    ON resume_points (user_id, watched_at DESC, entry_id DESC)
    INCLUDE (video_id, position_seconds, duration_seconds)
    WHERE duration_seconds IS NULL OR position_seconds < duration_seconds;

INSERT INTO resume_points (user_id, video_id, entry_id, position_seconds, duration_seconds,
                           watched_at)
SELECT DISTINCT ON (e.user_id, e.video_id)
       e.user_id, e.video_id, e.entry_id, e.position_seconds, e.duration_seconds, e.watched_at
  FROM history_entries e
 ORDER BY e.user_id, e.video_id, e.watched_at DESC, e.entry_id DESC;

-- POST /profiles/{userId}/history: V002's function plus the resume point. A point is replaced
-- only by a later (watched_at, entry_id), so an entry posted with an older watchedAt never hides
-- the latest one. The user lock (api_lock_user) serialises one user's writers.
CREATE OR REPLACE FUNCTION api_history_add(p_caller text, p_idem_key text, p_request_hash bytea,
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
    INSERT INTO resume_points AS rp (user_id, video_id, entry_id, position_seconds,
                                     duration_seconds, watched_at)
    VALUES (h.user_id, h.video_id, h.entry_id, h.position_seconds, h.duration_seconds,
            h.watched_at)
    ON CONFLICT (user_id, video_id) DO UPDATE
        SET entry_id = EXCLUDED.entry_id, position_seconds = EXCLUDED.position_seconds,
            duration_seconds = EXCLUDED.duration_seconds, watched_at = EXCLUDED.watched_at
        WHERE (EXCLUDED.watched_at, EXCLUDED.entry_id) > (rp.watched_at, rp.entry_id);
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

-- Pages. Each returns at least one row: `version` (the user's cache version, read in the same
-- snapshot as the rows) comes even for an empty page, whose other columns are then NULL. Up to
-- p_limit + 1 item rows, newest first: the extra row tells the caller a next page exists. The
-- keyset (p_after_ts, p_after_id) is the sort key of the previous page's last row, NULL for the
-- first page. The outer ORDER BY repeats the page order (a sort of at most p_limit + 1 rows),
-- so the order never depends on how the join is executed.
CREATE FUNCTION api_page_watchlist(p_user_id text, p_limit integer, p_after_ts timestamptz,
                                   p_after_id text)
    RETURNS TABLE (version bigint, video_id text, added_at timestamptz)
    LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT s.version, x.video_id, x.added_at
      FROM (SELECT coalesce((SELECT q.last_seq FROM user_event_seq q
                              WHERE q.user_id = p_user_id), 0) AS version) s
      LEFT JOIN LATERAL (
            SELECT w.video_id, w.added_at
              FROM watchlist_items w
             WHERE w.user_id = p_user_id
               AND (w.added_at, w.video_id) <
                   (coalesce(p_after_ts, 'infinity'::timestamptz), coalesce(p_after_id, ''))
             ORDER BY w.added_at DESC, w.video_id DESC
             LIMIT p_limit + 1) x ON true
     ORDER BY x.added_at DESC, x.video_id DESC;
END;

CREATE FUNCTION api_page_history(p_user_id text, p_limit integer, p_after_ts timestamptz,
                                 p_after_id uuid)
    RETURNS TABLE (version bigint, entry_id uuid, video_id text, position_seconds integer,
                   duration_seconds integer, watched_at timestamptz)
    LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT s.version, x.entry_id, x.video_id, x.position_seconds, x.duration_seconds,
           x.watched_at
      FROM (SELECT coalesce((SELECT q.last_seq FROM user_event_seq q
                              WHERE q.user_id = p_user_id), 0) AS version) s
      LEFT JOIN LATERAL (
            SELECT e.entry_id, e.video_id, e.position_seconds, e.duration_seconds, e.watched_at
              FROM history_entries e
             WHERE e.user_id = p_user_id
               AND (e.watched_at, e.entry_id) <
                   (coalesce(p_after_ts, 'infinity'::timestamptz),
                    coalesce(p_after_id, '00000000-0000-0000-0000-000000000000'::uuid))
             ORDER BY e.watched_at DESC, e.entry_id DESC
             LIMIT p_limit + 1) x ON true
     ORDER BY x.watched_at DESC, x.entry_id DESC;
END;

-- view=continue: the unfinished resume points (resume_points_user_unfinished_idx).
CREATE FUNCTION api_page_continue(p_user_id text, p_limit integer, p_after_ts timestamptz,
                                  p_after_id uuid)
    RETURNS TABLE (version bigint, entry_id uuid, video_id text, position_seconds integer,
                   duration_seconds integer, watched_at timestamptz)
    LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT s.version, x.entry_id, x.video_id, x.position_seconds, x.duration_seconds,
           x.watched_at
      FROM (SELECT coalesce((SELECT q.last_seq FROM user_event_seq q
                              WHERE q.user_id = p_user_id), 0) AS version) s
      LEFT JOIN LATERAL (
            SELECT r.entry_id, r.video_id, r.position_seconds, r.duration_seconds, r.watched_at
              FROM resume_points r
             WHERE r.user_id = p_user_id
               AND (r.duration_seconds IS NULL OR r.position_seconds < r.duration_seconds)
               AND (r.watched_at, r.entry_id) <
                   (coalesce(p_after_ts, 'infinity'::timestamptz),
                    coalesce(p_after_id, '00000000-0000-0000-0000-000000000000'::uuid))
             ORDER BY r.watched_at DESC, r.entry_id DESC
             LIMIT p_limit + 1) x ON true
     ORDER BY x.watched_at DESC, x.entry_id DESC;
END;

CREATE FUNCTION api_page_ratings(p_user_id text, p_limit integer, p_after_ts timestamptz,
                                 p_after_id text)
    RETURNS TABLE (version bigint, video_id text, rating smallint, review text,
                   created_at timestamptz, updated_at timestamptz)
    LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT s.version, x.video_id, x.rating, x.review, x.created_at, x.updated_at
      FROM (SELECT coalesce((SELECT q.last_seq FROM user_event_seq q
                              WHERE q.user_id = p_user_id), 0) AS version) s
      LEFT JOIN LATERAL (
            SELECT t.video_id, t.rating, t.review, t.created_at, t.updated_at
              FROM ratings t
             WHERE t.user_id = p_user_id
               AND (t.updated_at, t.video_id) <
                   (coalesce(p_after_ts, 'infinity'::timestamptz), coalesce(p_after_id, ''))
             ORDER BY t.updated_at DESC, t.video_id DESC
             LIMIT p_limit + 1) x ON true
     ORDER BY x.updated_at DESC, x.video_id DESC;
END;

-- GET ratings?videoId=: the one rating by primary key, still honouring the cursor (a cursor
-- past it gives an empty page).
CREATE FUNCTION api_page_rating_video(p_user_id text, p_video_id text, p_after_ts timestamptz,
                                      p_after_id text)
    RETURNS TABLE (version bigint, video_id text, rating smallint, review text,
                   created_at timestamptz, updated_at timestamptz)
    LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT s.version, x.video_id, x.rating, x.review, x.created_at, x.updated_at
      FROM (SELECT coalesce((SELECT q.last_seq FROM user_event_seq q
                              WHERE q.user_id = p_user_id), 0) AS version) s
      LEFT JOIN LATERAL (
            SELECT t.video_id, t.rating, t.review, t.created_at, t.updated_at
              FROM ratings t
             WHERE t.user_id = p_user_id
               AND t.video_id = p_video_id
               AND (t.updated_at, t.video_id) <
                   (coalesce(p_after_ts, 'infinity'::timestamptz), coalesce(p_after_id, ''))) x
           ON true;
END;

-- Replaced by the page functions above (api_ts_us made the old functions' next key; the API now
-- takes it from the binary timestamp).
DROP FUNCTION api_list_watchlist(text, integer, timestamptz, text);
DROP FUNCTION api_list_history(text, integer, timestamptz, text, boolean);
DROP FUNCTION api_list_ratings(text, integer, timestamptz, text, text);
DROP FUNCTION api_check_limit(integer);
DROP FUNCTION api_ts_us(timestamptz);
