-- V011 erasure: api_erase_profile removes everything of one user in one statement and emits
-- ProfileDeleted with the next sequence; outbox_erase_user is the relay's purge.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SELECT plan(24);

CREATE TEMP TABLE res (step text PRIMARY KEY, status integer, body text, etag text,
                       location text, replayed boolean, seq bigint);
CREATE FUNCTION pg_temp.rows_of(p_user text) RETURNS bigint LANGUAGE sql AS $$
    SELECT (SELECT count(*) FROM profiles WHERE user_id = p_user)
         + (SELECT count(*) FROM watchlist_items WHERE user_id = p_user)
         + (SELECT count(*) FROM history_entries WHERE user_id = p_user)
         + (SELECT count(*) FROM resume_points WHERE user_id = p_user)
         + (SELECT count(*) FROM ratings WHERE user_id = p_user)$$;

-- Two users with everything; t-er2 must be untouched by t-er1's erasure.
SELECT api_put_profile('t-er1', 'k-p', decode(repeat('aa', 32), 'hex'), 86400, NULL, 't-er1', 'Eve', NULL, NULL, NULL);
SELECT api_watchlist_add('t-er1', NULL, NULL, 86400, NULL, 't-er1', 'v1');
SELECT api_history_add('t-er1', NULL, NULL, 86400, NULL, 't-er1', 'v1', 10, 100, NULL);
SELECT api_rating_put('t-er1', NULL, NULL, 86400, NULL, 't-er1', 'v1', 4, 'secret review');
SELECT api_put_profile('t-er2', NULL, NULL, 86400, NULL, 't-er2', 'Bob', NULL, NULL, NULL);
SELECT api_rating_put('t-er2', NULL, NULL, 86400, NULL, 't-er2', 'v1', 5, 'keep me');
SELECT is(pg_temp.rows_of('t-er1'), 5::bigint, 'set-up: t-er1 has a profile, item, entry, resume point, rating');

INSERT INTO res SELECT 'd1', * FROM api_erase_profile('t-er1', NULL, NULL, 86400,
    '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', 't-er1');
SELECT results_eq($$SELECT status, body, etag, location, replayed, seq FROM res WHERE step = 'd1'$$,
    $$VALUES (204, '', NULL::text, NULL::text, false, 5::bigint)$$,
    'erase: 204, empty body, seq = the next sequence (5)');
SELECT is(pg_temp.rows_of('t-er1'), 0::bigint, 'every domain row of the user is gone');
SELECT is((SELECT count(*) FROM idempotency_keys WHERE caller = 't-er1'), 0::bigint,
    'the user''s stored idempotency outcomes are gone');
SELECT results_eq($$SELECT seq, event_type, payload::text, traceparent FROM outbox WHERE user_id = 't-er1' AND seq = 5$$,
    $$VALUES (5::bigint, 'ProfileDeleted', '{"userId":"t-er1"}', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01')$$,
    'ProfileDeleted event with data {"userId"} and the traceparent');
SELECT is((SELECT last_seq FROM user_event_seq WHERE user_id = 't-er1'), 5::bigint,
    'the sequence row stays (numbers never repeat)');
SELECT is(pg_temp.rows_of('t-er2'), 2::bigint, 'another user is untouched');
SELECT is((SELECT count(*) FROM outbox WHERE user_id = 't-er2'), 2::bigint, 'another user''s events are untouched');
SELECT is((SELECT status FROM api_get_profile('t-er1')), 404, 'GET profile after erasure: 404');
SELECT is((SELECT count(*) FROM api_page_watchlist('t-er1', 10, NULL, NULL) WHERE video_id IS NOT NULL), 0::bigint,
    'watchlist page empty');
SELECT is((SELECT version FROM api_page_ratings('t-er1', 10, NULL, NULL) LIMIT 1), 5::bigint,
    'the cache version moved to the ProfileDeleted sequence');

-- Repeat: nothing to erase, no event.
INSERT INTO res SELECT 'd2', * FROM api_erase_profile('t-er1', NULL, NULL, 86400, NULL, 't-er1');
SELECT results_eq($$SELECT status, seq FROM res WHERE step = 'd2'$$, $$VALUES (204, NULL::bigint)$$,
    'repeat erase: 204, no event');
SELECT is((SELECT max(seq) FROM outbox WHERE user_id = 't-er1'), 5::bigint, 'repeat erase wrote no outbox row');
INSERT INTO res SELECT 'd3', * FROM api_erase_profile('t-er9', NULL, NULL, 86400, NULL, 't-er9');
SELECT results_eq($$SELECT status, seq FROM res WHERE step = 'd3'$$, $$VALUES (204, NULL::bigint)$$,
    'erasing a user with no data: 204, no event');
SELECT is((SELECT count(*) FROM user_event_seq WHERE user_id = 't-er9'), 0::bigint, 'no sequence row made for nobody');

-- Writes after the erasure continue the sequence.
SELECT api_watchlist_add('t-er1', NULL, NULL, 86400, NULL, 't-er1', 'v2');
SELECT is((SELECT max(seq) FROM outbox WHERE user_id = 't-er1'), 6::bigint, 'a later write takes sequence 6');

-- Idempotency: an admin erasure with a key replays, and a key on another request is 422.
SELECT api_put_profile('t-er2', NULL, NULL, 86400, NULL, 't-er2', 'Bob', NULL, NULL, NULL);
INSERT INTO res SELECT 'd4', * FROM api_erase_profile('admin1', 'k-del', decode(repeat('bb', 32), 'hex'), 86400, NULL, 't-er2');
INSERT INTO res SELECT 'd5', * FROM api_erase_profile('admin1', 'k-del', decode(repeat('bb', 32), 'hex'), 86400, NULL, 't-er2');
INSERT INTO res SELECT 'd6', * FROM api_erase_profile('admin1', 'k-del', decode(repeat('cc', 32), 'hex'), 86400, NULL, 't-er2');
SELECT results_eq($$SELECT step, status, replayed, seq IS NOT NULL FROM res WHERE step IN ('d4', 'd5', 'd6') ORDER BY step$$,
    $$VALUES ('d4', 204, false, true), ('d5', 204, true, false), ('d6', 422, false, false)$$,
    'Idempotency-Key: first erases, retry replays 204 without an event, another request is 422');
SELECT is((SELECT count(*) FROM outbox WHERE user_id = 't-er2' AND event_type = 'ProfileDeleted'), 1::bigint,
    'one ProfileDeleted for the keyed erasure');

-- Relay purge: dead letters and held-back rows up to the ProfileDeleted go, later rows stay.
SELECT api_history_add('t-er3', NULL, NULL, 86400, NULL, 't-er3', 'v1', 1, NULL, NULL);
SELECT api_rating_put('t-er3', NULL, NULL, 86400, NULL, 't-er3', 'v1', 1, 'text');
INSERT INTO outbox_dead_letters (user_id, seq, event_id, error)
    SELECT user_id, seq, event_id, 'too large' FROM outbox WHERE user_id = 't-er3' AND seq = 1;
SELECT api_erase_profile('t-er3', NULL, NULL, 86400, NULL, 't-er3');
SELECT api_watchlist_add('t-er3', NULL, NULL, 86400, NULL, 't-er3', 'v9');
UPDATE outbox SET published_at = now() WHERE user_id = 't-er3' AND seq = 3;
SELECT results_eq($$SELECT dead_letters, rows FROM outbox_erase_user('t-er3', 3)$$,
    $$VALUES (1::bigint, 3::bigint)$$, 'purge: one dead letter and three rows (1..3) went');
SELECT is((SELECT array_agg(seq) FROM outbox WHERE user_id = 't-er3'), '{4}'::bigint[],
    'the row written after the erasure stays');
SELECT is((SELECT count(*) FROM outbox_dead_letters WHERE user_id = 't-er3'), 0::bigint, 'no dead letter left');
SELECT results_eq($$SELECT dead_letters, rows FROM outbox_erase_user('t-er3', 3)$$,
    $$VALUES (0::bigint, 0::bigint)$$, 'purge again: nothing (idempotent)');

-- Schema.
SELECT throws_ok($$INSERT INTO outbox (user_id, seq, event_type, payload, created_at) VALUES ('t-x', 1, 'ProfileGone', '{}', now())$$,
    '23514', NULL, 'unknown event types are still refused');
SELECT is((SELECT count(*)::int FROM pg_proc WHERE proname IN ('api_erase_profile', 'outbox_erase_user')
           AND prosecdef AND proconfig @> ARRAY['search_path=pg_catalog, public, pg_temp']), 2,
    'both functions: SECURITY DEFINER with a fixed search_path');

SELECT * FROM finish();
ROLLBACK;
