-- Read functions: V003's pages (keyset newest first, limit + 1 rows, the version row even for an
-- empty page, the continue view from resume_points), V002's profile read and maintenance.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SELECT plan(58);

-- One page as (label, key, ts, version) rows for items only: label is what the checks compare
-- (videoId, or positionSeconds for history), (ts, key) the keyset of the row.
CREATE FUNCTION pg_temp.page(p_kind text, p_user text, p_limit integer, p_ts timestamptz, p_id text)
    RETURNS TABLE (label text, key text, ts timestamptz, version bigint)
    LANGUAGE plpgsql AS $$
BEGIN
    IF p_kind = 'w' THEN
        RETURN QUERY SELECT p.video_id, p.video_id, p.added_at, p.version
                       FROM api_page_watchlist(p_user, p_limit, p_ts, p_id) p WHERE p.video_id IS NOT NULL;
    ELSIF p_kind = 'r' THEN
        RETURN QUERY SELECT p.video_id, p.video_id, p.updated_at, p.version
                       FROM api_page_ratings(p_user, p_limit, p_ts, p_id) p WHERE p.video_id IS NOT NULL;
    ELSIF p_kind = 'h' THEN
        RETURN QUERY SELECT p.position_seconds::text, p.entry_id::text, p.watched_at, p.version
                       FROM api_page_history(p_user, p_limit, p_ts, p_id::uuid) p WHERE p.entry_id IS NOT NULL;
    ELSE
        RETURN QUERY SELECT p.video_id, p.entry_id::text, p.watched_at, p.version
                       FROM api_page_continue(p_user, p_limit, p_ts, p_id::uuid) p WHERE p.entry_id IS NOT NULL;
    END IF;
END;
$$;
CREATE FUNCTION pg_temp.labels(p_kind text, p_user text, p_limit integer, p_ts timestamptz DEFAULT NULL,
                               p_id text DEFAULT NULL) RETURNS text[] LANGUAGE sql AS
    $$SELECT coalesce(array_agg(label), '{}') FROM pg_temp.page(p_kind, p_user, p_limit, p_ts, p_id)$$;
-- Walks every page as the API does (p_limit items shown, the extra row means "more", the last
-- shown row is the next key) and returns the labels in order plus the number of pages.
CREATE FUNCTION pg_temp.walk(p_kind text, p_user text, p_limit integer, OUT ids text[], OUT pages integer)
    LANGUAGE plpgsql AS $$
DECLARE
    r record;
    v_n integer;
    v_ts timestamptz;
    v_id text;
BEGIN
    ids := '{}';
    pages := 0;
    LOOP
        v_n := 0;
        FOR r IN SELECT * FROM pg_temp.page(p_kind, p_user, p_limit, v_ts, v_id) LOOP
            v_n := v_n + 1;
            IF v_n <= p_limit THEN
                ids := ids || r.label;
                v_ts := r.ts;
                v_id := r.key;
            END IF;
        END LOOP;
        pages := pages + 1;
        EXIT WHEN v_n <= p_limit OR pages > 100;
    END LOOP;
END;
$$;
-- The plan of a statement, as text.
CREATE FUNCTION pg_temp.plan(p_sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
    v text := '';
BEGIN
    FOR r IN EXECUTE 'EXPLAIN (COSTS OFF) ' || p_sql LOOP
        v := v || r || E'\n';
    END LOOP;
    RETURN v;
END;
$$;

-- ---------------------------------------------------------------- profile
SELECT results_eq($$SELECT status, body::jsonb->>'type', etag FROM api_get_profile('t-none')$$,
    $$VALUES (404, '/problems/not-found', NULL::text)$$, 'GET a profile never created: 404 problem');
SELECT lives_ok($$SELECT * FROM api_put_profile('t-g1', NULL, NULL, 60, NULL, 't-g1', 'G', NULL, '{"maturityRating":"PG"}', NULL)$$, 'create');
SELECT lives_ok($$SELECT * FROM api_put_profile('t-g1', NULL, NULL, 60, NULL, 't-g1', 'G2', NULL, '{"maturityRating":"PG"}', NULL)$$, 'replace');
SELECT results_eq($$SELECT status, etag, body::jsonb->>'displayName', body::jsonb->'version' FROM api_get_profile('t-g1')$$,
    $$VALUES (200, '"2"', 'G2', '2'::jsonb)$$, 'GET profile: 200, ETag and the profile');
SELECT is((SELECT body FROM api_get_profile('t-g1')),
    (SELECT api_json_profile(p) FROM profiles p WHERE user_id = 't-g1'), 'GET body is the same JSON a PUT returns');

-- ---------------------------------------------------------------- watchlist pages
SELECT results_eq($$SELECT version, video_id, added_at FROM api_page_watchlist('t-empty', 50, NULL, NULL)$$,
    $$VALUES (0::bigint, NULL::text, NULL::timestamptz)$$, 'empty list: one row with version 0 and no item');
-- 7 items: two pairs share a timestamp, so the id breaks ties
INSERT INTO watchlist_items (user_id, video_id, added_at) VALUES
    ('t-l1', 'a', '2026-01-01 00:00:01+00'), ('t-l1', 'b', '2026-01-01 00:00:02+00'),
    ('t-l1', 'c', '2026-01-01 00:00:02+00'), ('t-l1', 'd', '2026-01-01 00:00:03.000001+00'),
    ('t-l1', 'e', '2026-01-01 00:00:04+00'), ('t-l1', 'f', '2026-01-01 00:00:04+00'),
    ('t-l1', 'g', '2026-01-01 00:00:05+00'), ('t-l2', 'other', '2026-01-01 00:00:09+00');
SELECT is(pg_temp.labels('w', 't-l1', 50), ARRAY['g', 'f', 'e', 'd', 'c', 'b', 'a'],
    'newest first, ties by id descending, one user only');
SELECT is(pg_temp.labels('w', 't-l1', 3), ARRAY['g', 'f', 'e', 'd'], 'a page of 3 has 4 rows: the 4th says there is more');
SELECT is(pg_temp.labels('w', 't-l1', 7), ARRAY['g', 'f', 'e', 'd', 'c', 'b', 'a'], 'a page that holds the rest has no extra row');
SELECT results_eq($$SELECT video_id, added_at FROM api_page_watchlist('t-l1', 1, NULL, NULL)$$,
    $$VALUES ('g'::text, '2026-01-01 00:00:05+00'::timestamptz), ('f', '2026-01-01 00:00:04+00')$$, 'row values');
SELECT is(pg_temp.labels('w', 't-l1', 3, '2026-01-01 00:00:04+00', 'e'), ARRAY['d', 'c', 'b', 'a'],
    'the next page starts after the key');
SELECT is(pg_temp.labels('w', 't-l1', 2, '2026-01-01 00:00:04+00', 'f'), ARRAY['e', 'd', 'c'],
    'a key inside a tie: the rest of the tie comes next');
SELECT is(pg_temp.labels('w', 't-l1', 3, '2026-01-01 00:00:03.000001+00', 'd'), ARRAY['c', 'b', 'a'],
    'microsecond keys are exact');
SELECT results_eq($$SELECT * FROM pg_temp.walk('w', 't-l1', 2)$$,
    $$VALUES (ARRAY['g', 'f', 'e', 'd', 'c', 'b', 'a'], 4)$$, 'walking pages of 2 sees every item once');
SELECT results_eq($$SELECT * FROM pg_temp.walk('w', 't-l1', 1)$$,
    $$VALUES (ARRAY['g', 'f', 'e', 'd', 'c', 'b', 'a'], 7)$$, 'walking pages of 1');
SELECT lives_ok($$SELECT * FROM api_watchlist_add('t-l1', NULL, NULL, 60, NULL, 't-l1', 'h')$$, 'add through the API');
SELECT is(ARRAY(SELECT DISTINCT version FROM api_page_watchlist('t-l1', 3, NULL, NULL)), ARRAY[1::bigint],
    'every row carries the user''s last sequence as version');
SELECT is(pg_temp.labels('w', 't-l1', 1), ARRAY['h', 'g'], 'the new item comes first');
SELECT results_eq($$SELECT version, video_id FROM api_page_watchlist('t-l1', 5, '2000-01-01+00', 'a')$$,
    $$VALUES (1::bigint, NULL::text)$$, 'a page past the end: the version row alone');
SELECT unalike(pg_temp.plan($$SELECT * FROM api_page_watchlist('t-l1', 50, NULL, NULL)$$), '%Function Scan%',
    'api_page_watchlist is inlined into the caller''s statement');

-- ---------------------------------------------------------------- history pages
-- through api_history_add, which keeps resume_points; v4's last entry has an older watchedAt
DO $$
BEGIN
    PERFORM * FROM api_history_add('t-h1', NULL, NULL, 60, NULL, 't-h1', 'v1', 1, 100, '2026-02-01 10:00:00+00');
    PERFORM * FROM api_history_add('t-h1', NULL, NULL, 60, NULL, 't-h1', 'v2', 2, 100, '2026-02-01 10:00:01+00');
    PERFORM * FROM api_history_add('t-h1', NULL, NULL, 60, NULL, 't-h1', 'v1', 3, 100, '2026-02-01 10:00:02+00');
    PERFORM * FROM api_history_add('t-h1', NULL, NULL, 60, NULL, 't-h1', 'v3', 4, NULL, '2026-02-01 10:00:03+00');
    PERFORM * FROM api_history_add('t-h1', NULL, NULL, 60, NULL, 't-h1', 'v2', 100, 100, '2026-02-01 10:00:04+00');
    PERFORM * FROM api_history_add('t-h1', NULL, NULL, 60, NULL, 't-h1', 'v4', 6, 100, '2026-02-01 10:00:05+00');
    PERFORM * FROM api_history_add('t-h1', NULL, NULL, 60, NULL, 't-h1', 'v5', 7, 100, '2026-02-01 10:00:05+00');
    PERFORM * FROM api_history_add('t-h1', NULL, NULL, 60, NULL, 't-h1', 'v4', 8, 100, '2026-01-01 00:00:00+00');
END;
$$;
SELECT is((pg_temp.labels('h', 't-h1', 50))[3:8], ARRAY['100', '4', '3', '2', '1', '8'], 'history: every entry, newest first');
SELECT is(cardinality(pg_temp.labels('h', 't-h1', 50)), 8, 'history: 8 entries');
SELECT results_eq($$SELECT ids[3:8], pages FROM pg_temp.walk('h', 't-h1', 3)$$,
    $$VALUES (ARRAY['100', '4', '3', '2', '1', '8'], 3)$$, 'history pages of 3');
SELECT is(pg_temp.labels('h', 't-h1', 1) || pg_temp.labels('h', 't-h1', 1, '2026-02-01 10:00:05+00',
                                                              (SELECT key FROM pg_temp.page('h', 't-h1', 1, NULL, NULL) LIMIT 1)),
    (SELECT CASE WHEN (SELECT entry_id FROM history_entries WHERE user_id = 't-h1' AND position_seconds = 6) >
                      (SELECT entry_id FROM history_entries WHERE user_id = 't-h1' AND position_seconds = 7)
                 THEN ARRAY['6', '7', '7', '100'] ELSE ARRAY['7', '6', '6', '100'] END),
    'equal watchedAt: the larger entryId first, and the entryId in the key breaks the tie');
SELECT results_eq($$SELECT h.entry_id, h.video_id, h.position_seconds, h.duration_seconds, h.watched_at
                      FROM api_page_history('t-h1', 50, NULL, NULL) h WHERE h.video_id = 'v3'$$,
    $$SELECT entry_id, video_id, position_seconds, duration_seconds, watched_at FROM history_entries
       WHERE user_id = 't-h1' AND video_id = 'v3'$$, 'history row values (NULL duration)');
SELECT unalike(pg_temp.plan($$SELECT * FROM api_page_history('t-h1', 50, NULL, NULL)$$), '%Function Scan%',
    'api_page_history is inlined');
-- resume_points, kept by api_history_add
SELECT results_eq($$SELECT video_id, position_seconds FROM resume_points WHERE user_id = 't-h1' ORDER BY video_id$$,
    $$VALUES ('v1'::text, 3), ('v2', 100), ('v3', 4), ('v4', 6), ('v5', 7)$$,
    'resume_points: a newer entry replaced the point (v1, v2), an older watchedAt did not (v4)');
DO $$
BEGIN
    PERFORM * FROM api_history_add('t-h2', NULL, NULL, 60, NULL, 't-h2', 'x', 1, 10, '2026-02-01 10:00:00+00');
    PERFORM * FROM api_history_add('t-h2', NULL, NULL, 60, NULL, 't-h2', 'x', 2, 10, '2026-02-01 10:00:00+00');
    PERFORM * FROM api_history_add('t-h2', NULL, NULL, 60, NULL, 't-h2', 'x', 3, 10, '2026-02-01 10:00:00+00');
END;
$$;
SELECT is((SELECT entry_id FROM resume_points WHERE user_id = 't-h2'),
    (SELECT entry_id FROM history_entries WHERE user_id = 't-h2' ORDER BY entry_id DESC LIMIT 1),
    'resume_points: at equal watchedAt the larger entryId is the latest');
-- continue: latest per video, finished ones left out (v2 ends at 100/100), newest first
SELECT is((SELECT array_agg(v ORDER BY v) FROM unnest(pg_temp.labels('c', 't-h1', 50)) v),
    ARRAY['v1', 'v3', 'v4', 'v5'], 'continue: one entry per unfinished video');
SELECT is((pg_temp.labels('c', 't-h1', 50))[3:4], ARRAY['v3', 'v1'], 'continue: newest first');
SELECT is(ARRAY(SELECT position_seconds::text FROM api_page_continue('t-h1', 50, NULL, NULL)),
    (SELECT CASE WHEN (SELECT entry_id FROM history_entries WHERE user_id = 't-h1' AND position_seconds = 6) >
                      (SELECT entry_id FROM history_entries WHERE user_id = 't-h1' AND position_seconds = 7)
                 THEN ARRAY['6', '7', '4', '3'] ELSE ARRAY['7', '6', '4', '3'] END),
    'continue: the latest entry of each video (by watchedAt, ties by entryId), not an older one');
SELECT results_eq($$SELECT ids, pages FROM pg_temp.walk('c', 't-h1', 1)$$,
    $$SELECT pg_temp.labels('c', 't-h1', 50), 4$$, 'continue view paginates too');
SELECT is(pg_temp.labels('c', 't-h1', 2), (pg_temp.labels('c', 't-h1', 50))[1:3], 'continue: limit + 1 rows');
SELECT is((SELECT count(*)::int FROM api_page_continue('t-h1', 50, NULL, NULL) WHERE video_id = 'v2'), 0,
    'continue: a finished latest entry hides the video');
SELECT lives_ok($$SELECT * FROM api_history_add('t-h1', NULL, NULL, 60, NULL, 't-h1', 'v2', 10, 100, '2026-02-01 11:00:00+00')$$,
    'rewatch v2');
SELECT is((pg_temp.labels('c', 't-h1', 50))[1], 'v2', 'continue: a rewatch after finishing shows the video again');
SELECT results_eq($$SELECT entry_id FROM api_page_continue('t-h1', 50, NULL, NULL)$$,
    $$SELECT entry_id FROM (SELECT DISTINCT ON (video_id) * FROM history_entries WHERE user_id = 't-h1'
                             ORDER BY video_id, watched_at DESC, entry_id DESC) l
       WHERE duration_seconds IS NULL OR position_seconds < duration_seconds
       ORDER BY watched_at DESC, entry_id DESC$$,
    'continue equals the latest unfinished entry per video computed from the history');
SELECT results_eq($$SELECT version, entry_id FROM api_page_continue('t-empty', 10, NULL, NULL)$$,
    $$VALUES (0::bigint, NULL::uuid)$$, 'empty continue view: the version row alone');
SELECT is(ARRAY(SELECT DISTINCT version FROM api_page_continue('t-h1', 10, NULL, NULL)),
    ARRAY[(SELECT last_seq FROM user_event_seq WHERE user_id = 't-h1')], 'continue rows carry the version');
SELECT unalike(pg_temp.plan($$SELECT * FROM api_page_continue('t-h1', 50, NULL, NULL)$$), '%Function Scan%',
    'api_page_continue is inlined');

-- ---------------------------------------------------------------- ratings pages
SELECT lives_ok($$SELECT * FROM api_rating_put('t-r1', NULL, NULL, 60, NULL, 't-r1', 'm1', 4, 'ok')$$, 'rating m1');
SELECT lives_ok($$SELECT * FROM api_rating_put('t-r1', NULL, NULL, 60, NULL, 't-r1', 'm2', 5, NULL)$$, 'rating m2');
INSERT INTO ratings (user_id, video_id, rating, created_at, updated_at) VALUES
    ('t-r1', 'm0', 1, '2026-01-01 00:00:00+00', '2026-01-01 00:00:00+00'),
    ('t-r1', 'm9', 2, '2026-01-01 00:00:00+00', '2026-03-01 00:00:00+00');
SELECT is(pg_temp.labels('r', 't-r1', 50), ARRAY['m2', 'm1', 'm9', 'm0'], 'ratings newest first by updatedAt, ties by id');
SELECT results_eq($$SELECT * FROM pg_temp.walk('r', 't-r1', 3)$$,
    $$VALUES (ARRAY['m2', 'm1', 'm9', 'm0'], 2)$$, 'ratings pages of 3');
SELECT results_eq($$SELECT version, video_id, rating, review, created_at, updated_at FROM api_page_ratings('t-r1', 50, NULL, NULL) WHERE video_id = 'm9'$$,
    $$VALUES (2::bigint, 'm9'::text, 2::smallint, NULL::text, '2026-01-01 00:00:00+00'::timestamptz, '2026-03-01 00:00:00+00'::timestamptz)$$,
    'rating row values');
SELECT results_eq($$SELECT version, video_id, rating, review FROM api_page_rating_video('t-r1', 'm1', NULL, NULL)$$,
    $$VALUES (2::bigint, 'm1'::text, 4::smallint, 'ok'::text)$$, 'videoId filter: just that rating');
SELECT results_eq($$SELECT version, video_id FROM api_page_rating_video('t-r1', 'nope', NULL, NULL)$$,
    $$VALUES (2::bigint, NULL::text)$$, 'videoId filter without a match: the version row alone');
SELECT results_eq($$SELECT version, video_id FROM api_page_rating_video('t-r1', 'm9', '2026-03-01 00:00:00+00', 'm9')$$,
    $$VALUES (2::bigint, NULL::text)$$, 'videoId filter honours the cursor: nothing after its own key');
SELECT results_eq($$SELECT video_id FROM api_page_rating_video('t-r1', 'm9', '2026-03-01 00:00:00+00', 'mz')$$,
    $$VALUES ('m9'::text)$$, 'videoId filter: a key after the rating still finds it');
SELECT unalike(pg_temp.plan($$SELECT * FROM api_page_ratings('t-r1', 50, NULL, NULL)$$), '%Function Scan%',
    'api_page_ratings is inlined');
SELECT unalike(pg_temp.plan($$SELECT * FROM api_page_rating_video('t-r1', 'm1', NULL, NULL)$$), '%Function Scan%',
    'api_page_rating_video is inlined');

-- ---------------------------------------------------------------- maintenance
-- start from no expired records (the database may hold some from other tests; rolled back)
DELETE FROM idempotency_keys WHERE expires_at <= now();
INSERT INTO idempotency_keys (caller, idem_key, request_hash, status, response_body, created_at, expires_at)
    SELECT 't-c', 'old-' || i, sha256(i::text::bytea), 201, '{}', now() - interval '2 days', now() - interval '1 day' - i * interval '1 second'
      FROM generate_series(1, 25) i;
INSERT INTO idempotency_keys (caller, idem_key, request_hash, status, response_body, expires_at)
    VALUES ('t-c', 'live', sha256('live'), 201, '{}', now() + interval '1 hour');
SELECT is(api_idempotency_cleanup(10), 10, 'cleanup deletes at most one batch');
SELECT is(api_idempotency_cleanup(10), 10, 'second batch');
SELECT is(api_idempotency_cleanup(10), 5, 'the rest');
SELECT is(api_idempotency_cleanup(10), 0, 'nothing left to delete');
SELECT is((SELECT array_agg(idem_key) FROM idempotency_keys WHERE caller = 't-c'), ARRAY['live'], 'unexpired records stay');
SELECT is(api_idempotency_cleanup(0), 0, 'a batch of 0 deletes nothing');
SELECT is(schema_version(), (SELECT max(version) FROM schema_migrations), 'schema_version() = newest applied');

SELECT * FROM finish();
ROLLBACK;
