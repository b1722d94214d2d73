-- V002 read functions (keyset pagination newest first, continue view, version) and maintenance.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SELECT plan(46);

CREATE FUNCTION pg_temp.us(p bigint) RETURNS timestamptz LANGUAGE sql AS
    $$SELECT 'epoch'::timestamptz + p * interval '1 microsecond'$$;
CREATE FUNCTION pg_temp.ids(p_items text, p_member text) RETURNS text[] LANGUAGE sql AS
    $$SELECT coalesce(array_agg(e ->> p_member ORDER BY n), '{}') FROM json_array_elements(p_items::json) WITH ORDINALITY AS a(e, n)$$;
-- Walks every page of a list and returns the ids in order plus the number of pages.
CREATE FUNCTION pg_temp.walk(p_kind text, p_user text, p_limit integer, OUT ids text[], OUT pages integer)
    LANGUAGE plpgsql AS $$
DECLARE
    r record;
    v_ts timestamptz;
    v_id text;
BEGIN
    ids := '{}';
    pages := 0;
    LOOP
        IF p_kind = 'w' THEN
            SELECT * INTO r FROM api_list_watchlist(p_user, p_limit, v_ts, v_id);
            ids := ids || pg_temp.ids(r.items, 'videoId');
        ELSIF p_kind = 'r' THEN
            SELECT * INTO r FROM api_list_ratings(p_user, p_limit, v_ts, v_id, NULL);
            ids := ids || pg_temp.ids(r.items, 'videoId');
        ELSE
            SELECT * INTO r FROM api_list_history(p_user, p_limit, v_ts, v_id, p_kind = 'c');
            ids := ids || pg_temp.ids(r.items, CASE WHEN p_kind = 'c' THEN 'videoId' ELSE 'positionSeconds' END);
        END IF;
        pages := pages + 1;
        EXIT WHEN r.next_ts_us IS NULL OR pages > 100;
        v_ts := pg_temp.us(r.next_ts_us);
        v_id := r.next_id;
    END LOOP;
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
SELECT results_eq($$SELECT items, next_ts_us, next_id, version FROM api_list_watchlist('t-empty', 50, NULL, NULL)$$,
    $$VALUES ('[]', NULL::bigint, NULL::text, 0::bigint)$$, 'empty list: [], no next key, version 0');
-- 7 items: two pairs share a timestamp, so the id breaks ties
INSERT INTO watchlist_items (user_id, video_id, added_at) VALUES
    ('t-l1', 'a', '2026-01-01 00:00:01+00'), ('t-l1', 'b', '2026-01-01 00:00:02+00'),
    ('t-l1', 'c', '2026-01-01 00:00:02+00'), ('t-l1', 'd', '2026-01-01 00:00:03.000001+00'),
    ('t-l1', 'e', '2026-01-01 00:00:04+00'), ('t-l1', 'f', '2026-01-01 00:00:04+00'),
    ('t-l1', 'g', '2026-01-01 00:00:05+00'), ('t-l2', 'other', '2026-01-01 00:00:09+00');
SELECT is(pg_temp.ids((SELECT items FROM api_list_watchlist('t-l1', 50, NULL, NULL)), 'videoId'),
    ARRAY['g', 'f', 'e', 'd', 'c', 'b', 'a'], 'newest first, ties by id descending, one user only');
SELECT results_eq($$SELECT next_ts_us, next_id FROM api_list_watchlist('t-l1', 3, NULL, NULL)$$,
    $$VALUES (api_ts_us('2026-01-01 00:00:04+00'), 'e')$$, 'next key is the last item of the page');
SELECT is((SELECT items FROM api_list_watchlist('t-l1', 1, NULL, NULL)),
    '[{"videoId":"g","addedAt":"2026-01-01T00:00:05.000Z"}]', 'item body');
SELECT is(pg_temp.ids((SELECT items FROM api_list_watchlist('t-l1', 3, pg_temp.us(api_ts_us('2026-01-01 00:00:04+00')), 'e')), 'videoId'),
    ARRAY['d', 'c', 'b'], 'second page starts after the next key');
SELECT is(pg_temp.ids((SELECT items FROM api_list_watchlist('t-l1', 3, pg_temp.us(api_ts_us('2026-01-01 00:00:03.000001+00')), 'd')), 'videoId'),
    ARRAY['c', 'b', 'a'], 'microsecond keys are exact');
SELECT results_eq($$SELECT next_ts_us, next_id FROM api_list_watchlist('t-l1', 7, NULL, NULL)$$,
    $$VALUES (NULL::bigint, NULL::text)$$, 'a page that holds the rest has no next key');
SELECT results_eq($$SELECT * FROM pg_temp.walk('w', 't-l1', 2)$$,
    $$VALUES (ARRAY['g', 'f', 'e', 'd', 'c', 'b', 'a'], 4)$$, 'walking pages of 2 sees every item once');
SELECT results_eq($$SELECT * FROM pg_temp.walk('w', 't-l1', 1)$$,
    $$VALUES (ARRAY['g', 'f', 'e', 'd', 'c', 'b', 'a'], 7)$$, 'walking pages of 1');
SELECT throws_ok($$SELECT * FROM api_list_watchlist('t-l1', 0, NULL, NULL)$$, '22023', NULL, 'limit 0 is refused');
SELECT throws_ok($$SELECT * FROM api_list_watchlist('t-l1', NULL, NULL, NULL)$$, '22023', NULL, 'limit NULL is refused');
SELECT lives_ok($$SELECT * FROM api_watchlist_add('t-l1', NULL, NULL, 60, NULL, 't-l1', 'h')$$, 'add through the API');
SELECT is((SELECT version FROM api_list_watchlist('t-l1', 1, NULL, NULL)), 1::bigint, 'version is the user''s last sequence');
SELECT is(pg_temp.ids((SELECT items FROM api_list_watchlist('t-l1', 1, NULL, NULL)), 'videoId'), ARRAY['h'], 'the new item comes first');

-- ---------------------------------------------------------------- history pages
INSERT INTO history_entries (user_id, video_id, position_seconds, duration_seconds, watched_at) VALUES
    ('t-h1', 'v1', 1, 100, '2026-02-01 10:00:00+00'),
    ('t-h1', 'v2', 2, 100, '2026-02-01 10:00:01+00'),
    ('t-h1', 'v1', 3, 100, '2026-02-01 10:00:02+00'),
    ('t-h1', 'v3', 4, NULL, '2026-02-01 10:00:03+00'),
    ('t-h1', 'v2', 100, 100, '2026-02-01 10:00:04+00'),
    ('t-h1', 'v4', 6, 100, '2026-02-01 10:00:05+00'),
    ('t-h1', 'v5', 7, 100, '2026-02-01 10:00:05+00'),
    ('t-h1', 'v4', 8, 100, '2026-01-01 00:00:00+00');
SELECT is((SELECT pg_temp.ids(items, 'positionSeconds') FROM api_list_history('t-h1', 50, NULL, NULL, false))[3:8],
    ARRAY['100', '4', '3', '2', '1', '8'], 'history: every entry, newest first');
SELECT is((SELECT array_length(pg_temp.ids(items, 'positionSeconds'), 1) FROM api_list_history('t-h1', 50, NULL, NULL, false)), 8,
    'history: 8 entries');
SELECT results_eq($$SELECT ids[3:8], pages FROM pg_temp.walk('h', 't-h1', 3)$$,
    $$VALUES (ARRAY['100', '4', '3', '2', '1', '8'], 3)$$, 'history pages of 3');
SELECT is((SELECT next_id FROM api_list_history('t-h1', 1, NULL, NULL, false)),
    (SELECT (pg_temp.ids(items, 'entryId'))[1] FROM api_list_history('t-h1', 1, NULL, NULL, false)),
    'history next id is the entryId of the last item');
SELECT is((SELECT next_ts_us FROM api_list_history('t-h1', 1, NULL, NULL, false)),
    api_ts_us('2026-02-01 10:00:05+00'), 'history next ts is its watchedAt');
-- continue: latest per video, finished ones left out (v2 ends at 100/100), newest first
SELECT is((SELECT array_agg(v ORDER BY v) FROM unnest(pg_temp.ids((SELECT items FROM api_list_history('t-h1', 50, NULL, NULL, true)), 'videoId')) v),
    ARRAY['v1', 'v3', 'v4', 'v5'], 'continue: one entry per unfinished video');
SELECT is((pg_temp.ids((SELECT items FROM api_list_history('t-h1', 50, NULL, NULL, true)), 'videoId'))[3:4],
    ARRAY['v3', 'v1'], 'continue: newest first');
SELECT is((SELECT pg_temp.ids(items, 'positionSeconds') FROM api_list_history('t-h1', 50, NULL, NULL, true)),
    (SELECT CASE WHEN (SELECT entry_id FROM history_entries WHERE user_id = 't-h1' AND position_seconds = 6) >
                      (SELECT entry_id FROM history_entries WHERE user_id = 't-h1' AND position_seconds = 7)
                 THEN ARRAY['6', '7', '4', '3'] ELSE ARRAY['7', '6', '4', '3'] END),
    'continue: the latest entry of each video (by watchedAt, ties by entryId), not an older one');
SELECT results_eq($$SELECT ids, pages FROM pg_temp.walk('c', 't-h1', 1)$$,
    $$SELECT pg_temp.ids(items, 'videoId'), 4 FROM api_list_history('t-h1', 50, NULL, NULL, true)$$,
    'continue view paginates too');
SELECT is((SELECT items FROM api_list_history('t-h1', 50, NULL, NULL, true)) LIKE '%"positionSeconds":100%', false,
    'continue: a finished latest entry hides the video');
INSERT INTO history_entries (user_id, video_id, position_seconds, duration_seconds, watched_at) VALUES
    ('t-h1', 'v2', 10, 100, '2026-02-01 11:00:00+00');
SELECT is((pg_temp.ids((SELECT items FROM api_list_history('t-h1', 50, NULL, NULL, true)), 'videoId'))[1], 'v2',
    'continue: a rewatch after finishing shows the video again');
SELECT throws_ok($$SELECT * FROM api_list_history('t-h1', 101000, NULL, NULL, false)$$, '22023', NULL, 'limit too large is refused');
SELECT results_eq($$SELECT items, next_ts_us, version FROM api_list_history('t-empty', 10, NULL, NULL, true)$$,
    $$VALUES ('[]', NULL::bigint, 0::bigint)$$, 'empty continue view');

-- ---------------------------------------------------------------- ratings pages
SELECT lives_ok($$SELECT * FROM api_rating_put('t-r1', NULL, NULL, 60, NULL, 't-r1', 'm1', 4, 'ok')$$, 'rating m1');
SELECT lives_ok($$SELECT * FROM api_rating_put('t-r1', NULL, NULL, 60, NULL, 't-r1', 'm2', 5, NULL)$$, 'rating m2');
INSERT INTO ratings (user_id, video_id, rating, created_at, updated_at) VALUES
    ('t-r1', 'm0', 1, '2026-01-01 00:00:00+00', '2026-01-01 00:00:00+00'),
    ('t-r1', 'm9', 2, '2026-01-01 00:00:00+00', '2026-03-01 00:00:00+00');
SELECT is(pg_temp.ids((SELECT items FROM api_list_ratings('t-r1', 50, NULL, NULL, NULL)), 'videoId'),
    ARRAY['m2', 'm1', 'm9', 'm0'], 'ratings newest first by updatedAt, ties by id');
SELECT results_eq($$SELECT * FROM pg_temp.walk('r', 't-r1', 3)$$,
    $$VALUES (ARRAY['m2', 'm1', 'm9', 'm0'], 2)$$, 'ratings pages of 3');
SELECT results_eq($$SELECT items, next_ts_us, version FROM api_list_ratings('t-r1', 50, NULL, NULL, 'm1')$$,
    $$SELECT '[' || api_json_rating(video_id, rating, review, created_at, updated_at) || ']', NULL::bigint, 2::bigint FROM ratings WHERE user_id = 't-r1' AND video_id = 'm1'$$,
    'videoId filter: just that rating');
SELECT is((SELECT items FROM api_list_ratings('t-r1', 50, NULL, NULL, 'nope')), '[]', 'videoId filter without a match: []');
SELECT is((SELECT array_agg(k) FROM api_list_ratings('t-r1', 1, NULL, NULL, NULL), json_array_elements(items::json) e, json_object_keys(e) k),
    ARRAY['videoId', 'rating', 'review', 'createdAt', 'updatedAt'], 'rating members in order');

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
