-- V002 write functions: status, body, event, sequence, idempotency (docs/sql-api.md).
-- Everything runs in one transaction, so now() is the same for every call.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SELECT plan(110);

CREATE TEMP TABLE res (step text PRIMARY KEY, status integer, body text, etag text,
                       location text, replayed boolean, seq bigint);
CREATE FUNCTION pg_temp.seqs(p_user text) RETURNS bigint[] LANGUAGE sql AS
    $$SELECT coalesce(array_agg(seq ORDER BY seq), '{}') FROM outbox WHERE user_id = p_user$$;
CREATE FUNCTION pg_temp.ts(p timestamptz) RETURNS text LANGUAGE sql AS
    $$SELECT to_char(p AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')$$;

-- ---------------------------------------------------------------- profiles
INSERT INTO res SELECT 'p1', * FROM api_put_profile('t-pu1', NULL, NULL, 86400,
    '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    't-pu1', 'Alice 😀', 'https://img.example/a.png', '{"language":"en","autoplay":true}', NULL);
SELECT results_eq($$SELECT status, etag, location, replayed FROM res WHERE step = 'p1'$$,
    $$VALUES (201, '"1"', '/profiles/t-pu1', false)$$, 'PUT new profile: 201, ETag "1", Location');
SELECT is((SELECT array_agg(k) FROM res, json_object_keys(body::json) k WHERE step = 'p1'),
    ARRAY['userId', 'displayName', 'avatarUrl', 'preferences', 'version', 'createdAt', 'updatedAt'],
    'profile body members in order');
SELECT is((SELECT body::jsonb - 'createdAt' - 'updatedAt' FROM res WHERE step = 'p1'),
    '{"userId":"t-pu1","displayName":"Alice 😀","avatarUrl":"https://img.example/a.png","preferences":{"language":"en","autoplay":true},"version":1}'::jsonb,
    'profile body values');
SELECT is((SELECT json_typeof(body::json -> 'version') || '/' || json_typeof(body::json -> 'preferences') FROM res WHERE step = 'p1'),
    'number/object', 'version is a number, preferences an object');
SELECT is((SELECT body::json ->> 'createdAt' FROM res WHERE step = 'p1'), pg_temp.ts(now()),
    'createdAt is RFC 3339 UTC with milliseconds');
SELECT matches((SELECT body::json ->> 'updatedAt' FROM res WHERE step = 'p1'),
    '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$', 'updatedAt format');
SELECT results_eq($$SELECT seq, event_type, payload::text, traceparent, created_at FROM outbox WHERE user_id = 't-pu1'$$,
    $$VALUES (1::bigint, 'ProfileUpdated', '{"userId":"t-pu1","version":1}',
              '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', now())$$,
    'PUT new profile: ProfileUpdated event with traceparent and the transaction time');

INSERT INTO res SELECT 'p2', * FROM api_put_profile('t-pu1', NULL, NULL, 86400, NULL,
    't-pu1', 'Alice', NULL, NULL, '"1"');
SELECT results_eq($$SELECT status, etag, location, replayed, body::jsonb->'version', body::jsonb->'preferences', body::jsonb->'avatarUrl' FROM res WHERE step = 'p2'$$,
    $$VALUES (200, '"2"', NULL::text, false, '2'::jsonb, '{}'::jsonb, 'null'::jsonb)$$,
    'PUT with matching If-Match: 200, version 2, defaults for omitted members');
SELECT is((SELECT (res.body::json->>'createdAt') = (r1.body::json->>'createdAt') FROM res, res r1 WHERE res.step = 'p2' AND r1.step = 'p1'),
    true, 'replace keeps createdAt');

INSERT INTO res SELECT 'p3', * FROM api_put_profile('t-pu1', NULL, NULL, 86400, NULL,
    't-pu1', 'Alice', NULL, NULL, 'W/"2"');
SELECT results_eq($$SELECT status, etag, body::jsonb->>'type', (body::jsonb->>'status')::int FROM res WHERE step = 'p3'$$,
    $$VALUES (412, NULL::text, '/problems/precondition-failed', 412)$$, 'a weak tag never matches If-Match (412)');
INSERT INTO res SELECT 'p4', * FROM api_put_profile('t-pu1', NULL, NULL, 86400, NULL,
    't-pu1', 'Alice', NULL, NULL, '"1"');
SELECT is((SELECT status FROM res WHERE step = 'p4'), 412, 'stale If-Match: 412');
INSERT INTO res SELECT 'p4b', * FROM api_put_profile('t-pu1', NULL, NULL, 86400, NULL,
    't-pu1', 'Alice', NULL, NULL, '2');
SELECT is((SELECT status FROM res WHERE step = 'p4b'), 412, 'unquoted If-Match matches nothing: 412');
SELECT is(pg_temp.seqs('t-pu1'), '{1,2}'::bigint[], '412 writes no event');

INSERT INTO res SELECT 'p5', * FROM api_put_profile('t-pu1', NULL, NULL, 86400, NULL,
    't-pu1', 'Alice', NULL, NULL, '"7", W/"3", "2"');
SELECT results_eq($$SELECT status, etag FROM res WHERE step = 'p5'$$, $$VALUES (200, '"3"')$$,
    'If-Match list containing the current version: 200');
INSERT INTO res SELECT 'p6', * FROM api_put_profile('t-pu1', NULL, NULL, 86400, NULL,
    't-pu1', 'Alice', NULL, NULL, ' * ');
SELECT results_eq($$SELECT status, etag FROM res WHERE step = 'p6'$$, $$VALUES (200, '"4"')$$,
    'If-Match * on an existing profile: 200');
INSERT INTO res SELECT 'p7', * FROM api_put_profile('t-pu1', NULL, NULL, 86400, NULL,
    't-pu1', 'Alice', NULL, '{"subtitles":"de"}', NULL);
SELECT results_eq($$SELECT status, etag, body::jsonb->'preferences' FROM res WHERE step = 'p7'$$,
    $$VALUES (200, '"5"', '{"subtitles":"de"}'::jsonb)$$, 'PUT without If-Match replaces: 200, version 5');
SELECT is(pg_temp.seqs('t-pu1'), '{1,2,3,4,5}'::bigint[], 'profile events have sequences 1..5');
SELECT is((SELECT array_agg((payload->>'version')::int ORDER BY seq) FROM outbox WHERE user_id = 't-pu1'),
    '{1,2,3,4,5}'::int[], 'ProfileUpdated carries each version');
SELECT is((SELECT last_seq FROM user_event_seq WHERE user_id = 't-pu1'), 5::bigint, 'user_event_seq.last_seq = 5');

INSERT INTO res SELECT 'p8', * FROM api_put_profile('t-pu2', NULL, NULL, 86400, NULL,
    't-pu2', 'Bob', NULL, NULL, '*');
INSERT INTO res SELECT 'p9', * FROM api_put_profile('t-pu2', NULL, NULL, 86400, NULL,
    't-pu2', 'Bob', NULL, NULL, '"1"');
SELECT results_eq($$SELECT status FROM res WHERE step IN ('p8', 'p9') ORDER BY step$$,
    $$VALUES (412), (412)$$, 'any If-Match on a missing profile: 412');
SELECT is((SELECT count(*)::int FROM profiles WHERE user_id = 't-pu2'), 0, 'no profile created by a failed precondition');
SELECT is((SELECT count(*)::int FROM user_event_seq WHERE user_id = 't-pu2'), 0, 'no sequence for a failed precondition');
SELECT is((SELECT body::jsonb ->> 'title' FROM res WHERE step = 'p8'), 'Precondition Failed', 'problem title');

SELECT throws_ok($$SELECT * FROM api_put_profile('t-pu3', NULL, NULL, 86400, NULL, 't-pu3', '', NULL, NULL, NULL)$$,
    '23514', NULL, 'an invalid display name is refused by the constraint');

-- ---------------------------------------------------------------- watchlist
INSERT INTO res SELECT 'w1', * FROM api_watchlist_add('t-wu1', NULL, NULL, 86400, NULL, 't-wu1', 'v1');
SELECT results_eq($$SELECT status, body, etag, location, replayed FROM res WHERE step = 'w1'$$,
    format($$VALUES (201, '{"videoId":"v1","addedAt":"%s"}', NULL::text, NULL::text, false)$$, pg_temp.ts(now())),
    'watchlist add: 201 and the item');
SELECT results_eq($$SELECT seq, event_type, payload::text FROM outbox WHERE user_id = 't-wu1'$$,
    $$VALUES (1::bigint, 'WatchlistUpdated', '{"userId":"t-wu1","videoId":"v1","action":"added"}')$$,
    'watchlist add: WatchlistUpdated added');
INSERT INTO res SELECT 'w2', * FROM api_watchlist_add('t-wu1', NULL, NULL, 86400, NULL, 't-wu1', 'v1');
SELECT results_eq($$SELECT status, body FROM res WHERE step = 'w2'$$,
    $$SELECT 200, body FROM res WHERE step = 'w1'$$, 'watchlist add of a present video: 200 and the item');
SELECT is(pg_temp.seqs('t-wu1'), '{1}'::bigint[], 'no event for a no-op add');
SELECT is((SELECT last_seq FROM user_event_seq WHERE user_id = 't-wu1'), 1::bigint, 'no sequence bump for a no-op add');
INSERT INTO res SELECT 'w3', * FROM api_watchlist_remove('t-wu1', NULL, NULL, 86400, NULL, 't-wu1', 'v1');
SELECT results_eq($$SELECT status, body, replayed FROM res WHERE step = 'w3'$$,
    $$VALUES (204, '', false)$$, 'watchlist remove: 204 with an empty body');
SELECT results_eq($$SELECT seq, payload::text FROM outbox WHERE user_id = 't-wu1' AND seq = 2$$,
    $$VALUES (2::bigint, '{"userId":"t-wu1","videoId":"v1","action":"removed"}')$$, 'watchlist remove: WatchlistUpdated removed');
INSERT INTO res SELECT 'w4', * FROM api_watchlist_remove('t-wu1', NULL, NULL, 86400, NULL, 't-wu1', 'v1');
SELECT is((SELECT status FROM res WHERE step = 'w4'), 204, 'removing an absent video: 204');
SELECT is(pg_temp.seqs('t-wu1'), '{1,2}'::bigint[], 'no event for a no-op remove');
SELECT is((SELECT last_seq FROM user_event_seq WHERE user_id = 't-wu1'), 2::bigint, 'no sequence bump for a no-op remove');

-- 1000 items is the limit
INSERT INTO watchlist_items (user_id, video_id, added_at)
    SELECT 't-wf1', 'v' || i, now() - i * interval '1 second' FROM generate_series(1, 999) i;
INSERT INTO res SELECT 'f1', * FROM api_watchlist_add('t-wf1', NULL, NULL, 86400, NULL, 't-wf1', 'x1000');
SELECT is((SELECT status FROM res WHERE step = 'f1'), 201, 'the 1000th item is accepted');
INSERT INTO res SELECT 'f2', * FROM api_watchlist_add('t-wf1', 'k-full', sha256('f2'), 86400, NULL, 't-wf1', 'x1001');
SELECT results_eq($$SELECT status, body::jsonb->>'type', (body::jsonb->>'status')::int, replayed FROM res WHERE step = 'f2'$$,
    $$VALUES (409, '/problems/watchlist-full', 409, false)$$, 'the 1001st item: 409 watchlist-full');
SELECT is((SELECT count(*)::int FROM watchlist_items WHERE user_id = 't-wf1'), 1000, 'still 1000 items');
SELECT is(pg_temp.seqs('t-wf1'), '{1}'::bigint[], 'no event for watchlist-full');
INSERT INTO res SELECT 'f3', * FROM api_watchlist_add('t-wf1', 'k-full', sha256('f2'), 86400, NULL, 't-wf1', 'x1001');
SELECT results_eq($$SELECT status, body, replayed FROM res WHERE step = 'f3'$$,
    $$SELECT status, body, true FROM res WHERE step = 'f2'$$, 'a stored 409 is replayed');
INSERT INTO res SELECT 'f4', * FROM api_watchlist_add('t-wf1', NULL, NULL, 86400, NULL, 't-wf1', 'v5');
SELECT is((SELECT status FROM res WHERE step = 'f4'), 200, 'a present video at the limit: 200');
INSERT INTO res SELECT 'f5', * FROM api_watchlist_remove('t-wf1', NULL, NULL, 86400, NULL, 't-wf1', 'v5');
INSERT INTO res SELECT 'f6', * FROM api_watchlist_add('t-wf1', 'k-full', sha256('f6'), 86400, NULL, 't-wf1', 'x1001');
SELECT is((SELECT status FROM res WHERE step = 'f6'), 422, 'the key of the 409 with another request: 422');
INSERT INTO res SELECT 'f7', * FROM api_watchlist_add('t-wf1', NULL, NULL, 86400, NULL, 't-wf1', 'x1001');
SELECT is((SELECT status FROM res WHERE step = 'f7'), 201, 'after a removal there is room again');
SELECT is(pg_temp.seqs('t-wf1'), '{1,2,3}'::bigint[], 'watchlist-full user: sequences 1..3');

-- ---------------------------------------------------------------- history
INSERT INTO res SELECT 'h1', * FROM api_history_add('t-hu1', NULL, NULL, 86400, NULL, 't-hu1', 'v1', 60, 3600,
    '2026-11-25T22:29:14.123456Z');
SELECT is((SELECT status FROM res WHERE step = 'h1'), 201, 'history add: 201');
SELECT is((SELECT body::jsonb - 'entryId' FROM res WHERE step = 'h1'),
    '{"videoId":"v1","positionSeconds":60,"durationSeconds":3600,"watchedAt":"2026-11-25T22:29:14.123Z"}'::jsonb,
    'history entry body');
SELECT is((SELECT array_agg(k) FROM res, json_object_keys(body::json) k WHERE step = 'h1'),
    ARRAY['entryId', 'videoId', 'positionSeconds', 'durationSeconds', 'watchedAt'], 'history body members in order');
SELECT is((SELECT (body::json->>'entryId')::uuid FROM res WHERE step = 'h1'),
    (SELECT entry_id FROM history_entries WHERE user_id = 't-hu1'), 'entryId is the stored entry');
SELECT results_eq($$SELECT seq, event_type, payload::text FROM outbox WHERE user_id = 't-hu1'$$,
    $$VALUES (1::bigint, 'HistoryUpdated', '{"userId":"t-hu1","videoId":"v1","positionSeconds":60,"durationSeconds":3600,"watchedAt":"2026-11-25T22:29:14.123Z"}')$$,
    'history add: HistoryUpdated payload');
INSERT INTO res SELECT 'h2', * FROM api_history_add('t-hu1', NULL, NULL, 86400, NULL, 't-hu1', 'v1', 0, NULL, NULL);
SELECT is((SELECT body::jsonb - 'entryId' FROM res WHERE step = 'h2'),
    format('{"videoId":"v1","positionSeconds":0,"durationSeconds":null,"watchedAt":"%s"}', pg_temp.ts(now()))::jsonb,
    'duration null and watchedAt = the transaction time when absent');
INSERT INTO res SELECT 'h3', * FROM api_history_add('t-hu1', NULL, NULL, 86400, NULL, 't-hu1', 'v1', 0, NULL, NULL);
SELECT is((SELECT count(*)::int FROM history_entries WHERE user_id = 't-hu1'), 3, 'history add without a key appends');
SELECT is(pg_temp.seqs('t-hu1'), '{1,2,3}'::bigint[], 'one event per append');
SELECT throws_ok($$SELECT * FROM api_history_add('t-hu1', NULL, NULL, 86400, NULL, 't-hu1', 'v1', 10, 5, NULL)$$,
    '23514', NULL, 'position > duration is refused');
SELECT throws_ok($$SELECT * FROM api_history_add('t-hu1', NULL, NULL, 86400, NULL, 't-hu1', 'v1', -1, NULL, NULL)$$,
    '23514', NULL, 'negative position is refused');

-- ---------------------------------------------------------------- ratings
INSERT INTO res SELECT 'r1', * FROM api_rating_put('t-ru1', NULL, NULL, 86400, NULL, 't-ru1', 'v1', 5, 'Great "film"');
SELECT results_eq($$SELECT status, body FROM res WHERE step = 'r1'$$,
    format($$VALUES (201, '{"videoId":"v1","rating":5,"review":"Great \"film\"","createdAt":"%1$s","updatedAt":"%1$s"}')$$, pg_temp.ts(now())),
    'new rating: 201 and the rating');
INSERT INTO res SELECT 'r2', * FROM api_rating_put('t-ru1', NULL, NULL, 86400, NULL, 't-ru1', 'v1', 2, NULL);
SELECT results_eq($$SELECT status, body::jsonb->'rating', body::jsonb->'review' FROM res WHERE step = 'r2'$$,
    $$VALUES (200, '2'::jsonb, 'null'::jsonb)$$, 'replaced rating: 200');
SELECT is((SELECT count(*)::int FROM ratings WHERE user_id = 't-ru1'), 1, 'one rating per user and video');
SELECT results_eq($$SELECT seq, event_type, payload::text FROM outbox WHERE user_id = 't-ru1' ORDER BY seq$$,
    $$VALUES (1::bigint, 'VideoRated', '{"userId":"t-ru1","videoId":"v1","rating":5,"review":"Great \"film\""}'),
             (2::bigint, 'VideoRated', '{"userId":"t-ru1","videoId":"v1","rating":2,"review":null}')$$,
    'VideoRated for new and replaced ratings');
SELECT throws_ok($$SELECT * FROM api_rating_put('t-ru1', NULL, NULL, 86400, NULL, 't-ru1', 'v2', 6, NULL)$$,
    '23514', NULL, 'rating 6 is refused');

-- ---------------------------------------------------------------- idempotency
INSERT INTO res SELECT 'i1', * FROM api_history_add('t-iu1', 'key-1', sha256('POST h1'), 600, NULL, 't-iu1', 'v1', 5, NULL, NULL);
INSERT INTO res SELECT 'i2', * FROM api_history_add('t-iu1', 'key-1', sha256('POST h1'), 600, NULL, 't-iu1', 'v1', 5, NULL, NULL);
SELECT is((SELECT replayed FROM res WHERE step = 'i1'), false, 'first use of a key is not a replay');
SELECT results_eq($$SELECT status, body, etag, location, true FROM res WHERE step = 'i1'$$,
    $$SELECT status, body, etag, location, replayed FROM res WHERE step = 'i2'$$, 'same key and request: the same status and body, replayed');
SELECT is((SELECT count(*)::int FROM history_entries WHERE user_id = 't-iu1'), 1, 'a replay changes nothing');
SELECT is(pg_temp.seqs('t-iu1'), '{1}'::bigint[], 'a replay writes no second event');
SELECT results_eq($$SELECT status, response_body, request_hash, expires_at FROM idempotency_keys WHERE caller = 't-iu1' AND idem_key = 'key-1'$$,
    $$SELECT 201::smallint, body, sha256('POST h1'), now() + interval '600 seconds' FROM res WHERE step = 'i1'$$,
    'the record holds status, body, hash and expires_at = now() + ttl');
INSERT INTO res SELECT 'i3', * FROM api_history_add('t-iu1', 'key-1', sha256('POST h2'), 600, NULL, 't-iu1', 'v2', 5, NULL, NULL);
SELECT results_eq($$SELECT status, body::jsonb->>'type', replayed FROM res WHERE step = 'i3'$$,
    $$VALUES (422, '/problems/idempotency-key-mismatch', false)$$, 'same key, another request: 422');
SELECT is((SELECT request_hash FROM idempotency_keys WHERE caller = 't-iu1' AND idem_key = 'key-1'), sha256('POST h1'),
    'a 422 is not stored');
SELECT is(pg_temp.seqs('t-iu1'), '{1}'::bigint[], 'a 422 writes no event');
INSERT INTO res SELECT 'i4', * FROM api_history_add('t-other', 'key-1', sha256('POST h2'), 600, NULL, 't-iu1', 'v2', 5, NULL, NULL);
SELECT is((SELECT status || '/' || replayed FROM res WHERE step = 'i4'), '201/false', 'keys are scoped per caller');

-- a key used for a profile PUT replays ETag and Location too
INSERT INTO res SELECT 'i5', * FROM api_put_profile('t-iu2', 'put-1', sha256('PUT'), 600, NULL, 't-iu2', 'Eve', NULL, NULL, NULL);
INSERT INTO res SELECT 'i6', * FROM api_put_profile('t-iu2', 'put-1', sha256('PUT'), 600, NULL, 't-iu2', 'Eve', NULL, NULL, NULL);
SELECT results_eq($$SELECT status, body, etag, location, replayed FROM res WHERE step = 'i6'$$,
    $$SELECT 201, body, '"1"'::text, '/profiles/t-iu2'::text, true FROM res WHERE step = 'i5'$$, 'profile replay: 201, ETag, Location');
SELECT is((SELECT version FROM profiles WHERE user_id = 't-iu2'), 1::bigint, 'a replayed PUT does not bump version');
SELECT is(pg_temp.seqs('t-iu2'), '{1}'::bigint[], 'a replayed PUT writes no event');
INSERT INTO res SELECT 'i7', * FROM api_put_profile('t-iu2', 'put-2', sha256('PUT2'), 600, NULL, 't-iu2', 'Eve', NULL, NULL, '"9"');
INSERT INTO res SELECT 'i8', * FROM api_put_profile('t-iu2', 'put-2', sha256('PUT2'), 600, NULL, 't-iu2', 'Eve', NULL, NULL, '"9"');
SELECT results_eq($$SELECT status, replayed FROM res WHERE step IN ('i7', 'i8') ORDER BY step$$,
    $$VALUES (412, false), (412, true)$$, 'a 412 is stored and replayed');

-- watchlist: no-op outcomes are stored and replayed as well
INSERT INTO res SELECT 'i9', * FROM api_watchlist_remove('t-iu3', 'del-1', sha256('DELETE'), 600, NULL, 't-iu3', 'v1');
INSERT INTO res SELECT 'i10', * FROM api_watchlist_remove('t-iu3', 'del-1', sha256('DELETE'), 600, NULL, 't-iu3', 'v1');
SELECT results_eq($$SELECT status, body, replayed FROM res WHERE step IN ('i10', 'i9') ORDER BY step$$,
    $$VALUES (204, '', true), (204, '', false)$$, 'DELETE with a key: 204, replayed 204');

-- an expired record is overwritten
UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE caller = 't-iu1' AND idem_key = 'key-1';
INSERT INTO res SELECT 'i11', * FROM api_history_add('t-iu1', 'key-1', sha256('POST h3'), 600, NULL, 't-iu1', 'v3', 5, NULL, NULL);
SELECT is((SELECT status || '/' || replayed FROM res WHERE step = 'i11'), '201/false', 'an expired key is used afresh');
SELECT is((SELECT request_hash FROM idempotency_keys WHERE caller = 't-iu1' AND idem_key = 'key-1'), sha256('POST h3'),
    'the expired record was replaced');
SELECT is(pg_temp.seqs('t-iu1'), '{1,2,3}'::bigint[], 't-iu1 sequences stay gapless');

SELECT throws_ok($$SELECT * FROM api_watchlist_add('t-iu1', 'k', NULL, 600, NULL, 't-iu1', 'v1')$$,
    '22023', NULL, 'a key without a request hash is refused');
SELECT throws_ok($$SELECT * FROM api_watchlist_add('t-iu1', E'bad\tkey', sha256('x'), 600, NULL, 't-iu1', 'v1')$$,
    '23514', NULL, 'a key with a control character is refused');

-- ---------------------------------------------------------------- ce_time monotonic
INSERT INTO res SELECT 'c1', * FROM api_watchlist_add('t-cu1', NULL, NULL, 86400, NULL, 't-cu1', 'v1');
UPDATE user_event_seq SET last_event_at = now() + interval '1 hour' WHERE user_id = 't-cu1';
INSERT INTO res SELECT 'c2', * FROM api_watchlist_add('t-cu1', NULL, NULL, 86400, NULL, 't-cu1', 'v2');
SELECT results_eq($$SELECT seq, created_at FROM outbox WHERE user_id = 't-cu1' ORDER BY seq$$,
    $$VALUES (1::bigint, now()), (2::bigint, now() + interval '1 hour')$$,
    'created_at never goes backwards for one user');
SELECT is((SELECT last_event_at FROM user_event_seq WHERE user_id = 't-cu1'), now() + interval '1 hour',
    'last_event_at keeps the latest time');

-- ---------------------------------------------------------------- sequences across all write kinds
SELECT lives_ok($$
    SELECT count(*) FROM (
        SELECT * FROM api_put_profile('t-su1', NULL, NULL, 60, NULL, 't-su1', 'S', NULL, NULL, NULL)
        UNION ALL SELECT * FROM api_watchlist_add('t-su1', NULL, NULL, 60, NULL, 't-su1', 'a')
        UNION ALL SELECT * FROM api_watchlist_add('t-su1', NULL, NULL, 60, NULL, 't-su1', 'a')
        UNION ALL SELECT * FROM api_history_add('t-su1', NULL, NULL, 60, NULL, 't-su1', 'a', 1, 2, NULL)
        UNION ALL SELECT * FROM api_rating_put('t-su1', NULL, NULL, 60, NULL, 't-su1', 'a', 3, NULL)
        UNION ALL SELECT * FROM api_watchlist_remove('t-su1', NULL, NULL, 60, NULL, 't-su1', 'a')
        UNION ALL SELECT * FROM api_watchlist_remove('t-su1', NULL, NULL, 60, NULL, 't-su1', 'a')
        UNION ALL SELECT * FROM api_put_profile('t-su1', NULL, NULL, 60, NULL, 't-su1', 'S', NULL, NULL, NULL)) x$$,
    'mixed writes');
SELECT is(pg_temp.seqs('t-su1'), '{1,2,3,4,5,6}'::bigint[], 'six changes: sequences 1..6 without gaps');
SELECT is((SELECT array_agg(event_type ORDER BY seq) FROM outbox WHERE user_id = 't-su1'),
    ARRAY['ProfileUpdated', 'WatchlistUpdated', 'HistoryUpdated', 'VideoRated', 'WatchlistUpdated', 'ProfileUpdated'],
    'event types in write order');
SELECT ok((SELECT bool_and(partition_no = outbox_partition(user_id)) FROM outbox), 'partition_no follows outbox_partition');
SELECT ok((SELECT bool_and(published_at IS NULL) FROM outbox), 'new events are pending');
SELECT is((SELECT count(DISTINCT event_id)::int FROM outbox), (SELECT count(*)::int FROM outbox), 'every event has its own id');

-- ---------------------------------------------------------------- returned seq (cache version)
SELECT results_eq($$SELECT step, seq FROM res WHERE step IN ('p1', 'p2', 'p5', 'w1', 'w3', 'h1', 'h3', 'r1', 'r2', 'f1', 'f7', 'i1', 'i5', 'i11') ORDER BY step$$,
    $$VALUES ('f1', 1::bigint), ('f7', 3), ('h1', 1), ('h3', 3), ('i1', 1), ('i11', 3), ('i5', 1), ('p1', 1), ('p2', 2), ('p5', 3), ('r1', 1), ('r2', 2), ('w1', 1), ('w3', 2)$$,
    'a write that emitted an event returns its sequence');
SELECT is((SELECT array_agg(step ORDER BY step) FROM res WHERE seq IS NULL),
    ARRAY['f2', 'f3', 'f4', 'f6', 'i10', 'i2', 'i3', 'i6', 'i7', 'i8', 'i9', 'p3', 'p4', 'p4b', 'p8', 'p9', 'w2', 'w4'],
    'no-ops, business errors and replays return seq NULL');
SELECT is((SELECT seq FROM res WHERE step = 'p7'), (SELECT last_seq FROM user_event_seq WHERE user_id = 't-pu1'),
    'the returned seq is the user''s new cache version');

-- ---------------------------------------------------------------- function properties
SELECT set_eq($$SELECT proname::text FROM pg_proc WHERE proname ~ '^api_' AND pronamespace = 'public'::regnamespace AND prosecdef$$,
    ARRAY['api_put_profile', 'api_watchlist_add', 'api_watchlist_remove', 'api_history_add', 'api_rating_put', 'api_get_profile', 'api_idempotency_cleanup', 'api_erase_profile'],
    'SECURITY DEFINER: exactly the functions V004 (and V011, erasure) run as the owner (the API role writes nothing itself)');
SELECT is((SELECT count(*)::int FROM pg_proc WHERE (proname ~ '^api_' OR proname = 'schema_version') AND pronamespace = 'public'::regnamespace
           AND prolang = (SELECT oid FROM pg_language WHERE lanname = 'plpgsql')
           AND NOT coalesce(proconfig @> ARRAY['search_path=pg_catalog, public, pg_temp'], false)), 0,
    'every PL/pgSQL api function sets search_path');
SELECT is((SELECT count(*)::int FROM pg_proc WHERE proname ~ '^api_' AND pronamespace = 'public'::regnamespace
           AND prolang = (SELECT oid FROM pg_language WHERE lanname = 'sql') AND prosqlbody IS NULL), 0,
    'SQL helpers have SQL-standard bodies (names bound at creation, inlinable)');
SELECT volatility_is('api_get_profile', ARRAY['text'], 'stable');
SELECT volatility_is('api_page_watchlist', ARRAY['text', 'integer', 'timestamp with time zone', 'text'], 'stable');
SELECT volatility_is('api_page_history', ARRAY['text', 'integer', 'timestamp with time zone', 'uuid'], 'stable');
SELECT volatility_is('api_page_continue', ARRAY['text', 'integer', 'timestamp with time zone', 'uuid'], 'stable');
SELECT volatility_is('api_page_ratings', ARRAY['text', 'integer', 'timestamp with time zone', 'text'], 'stable');
SELECT volatility_is('api_page_rating_video', ARRAY['text', 'text', 'timestamp with time zone', 'text'], 'stable');
SELECT is((SELECT count(*)::int FROM pg_proc WHERE proname ~ '^api_page_' AND pronamespace = 'public'::regnamespace
           AND (prolang <> (SELECT oid FROM pg_language WHERE lanname = 'sql') OR prosqlbody IS NULL
                OR proconfig IS NOT NULL OR prosecdef)), 0,
    'page functions are inlinable: SQL-standard bodies, no SET clause, not SECURITY DEFINER');
SELECT hasnt_function('api_list_watchlist', 'V003 dropped api_list_watchlist');
SELECT hasnt_function('api_list_history', 'V003 dropped api_list_history');
SELECT hasnt_function('api_list_ratings', 'V003 dropped api_list_ratings');
SELECT hasnt_function('api_check_limit', 'V003 dropped api_check_limit');
SELECT hasnt_function('api_ts_us', 'V003 dropped api_ts_us');
SELECT function_returns('api_put_profile', ARRAY['text', 'text', 'bytea', 'integer', 'text', 'text', 'text', 'text', 'jsonb', 'text'], 'setof record');
SELECT has_function('api_watchlist_add', ARRAY['text', 'text', 'bytea', 'integer', 'text', 'text', 'text']);
SELECT has_function('api_watchlist_remove', ARRAY['text', 'text', 'bytea', 'integer', 'text', 'text', 'text']);
SELECT has_function('api_history_add', ARRAY['text', 'text', 'bytea', 'integer', 'text', 'text', 'text', 'integer', 'integer', 'timestamp with time zone']);
SELECT has_function('api_rating_put', ARRAY['text', 'text', 'bytea', 'integer', 'text', 'text', 'text', 'integer', 'text']);
SELECT function_returns('api_idempotency_cleanup', ARRAY['integer'], 'integer');
SELECT function_returns('schema_version', ARRAY[]::text[], 'integer');

SELECT * FROM finish();
ROLLBACK;
