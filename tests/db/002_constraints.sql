-- V001 constraints reject bad rows (and accept the boundaries).
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SELECT plan(55);

-- ids
SELECT throws_ok($$INSERT INTO profiles (user_id, display_name) VALUES ('bad id', 'x')$$,
                 '23514', NULL, 'user id with a space');
SELECT throws_ok($$INSERT INTO profiles (user_id, display_name) VALUES ('', 'x')$$,
                 '23514', NULL, 'empty user id');
SELECT throws_ok($$INSERT INTO profiles (user_id, display_name) VALUES (repeat('a', 65), 'x')$$,
                 '23514', NULL, 'user id of 65 characters');
SELECT throws_ok($$INSERT INTO profiles (user_id, display_name) VALUES ('ü', 'x')$$,
                 '23514', NULL, 'non-ASCII user id');
SELECT lives_ok($$INSERT INTO profiles (user_id, display_name) VALUES (repeat('a', 64), 'x')$$,
                'user id of 64 characters');
SELECT lives_ok($$INSERT INTO profiles (user_id, display_name) VALUES ('A.b_c-9', 'x')$$,
                'user id with . _ -');
SELECT throws_ok($$INSERT INTO watchlist_items (user_id, video_id) VALUES ('u1', 'v/1')$$,
                 '23514', NULL, 'watchlist video id with a slash');
SELECT throws_ok($$INSERT INTO watchlist_items (user_id, video_id) VALUES ('u 1', 'v1')$$,
                 '23514', NULL, 'watchlist user id with a space');
SELECT throws_ok($$INSERT INTO history_entries (user_id, video_id, position_seconds) VALUES ('u1', 'v?', 1)$$,
                 '23514', NULL, 'history video id with ?');
SELECT throws_ok($$INSERT INTO ratings (user_id, video_id, rating) VALUES ('u1', repeat('v', 65), 3)$$,
                 '23514', NULL, 'rating video id of 65 characters');

-- profiles
SELECT throws_ok($$INSERT INTO profiles (user_id, display_name) VALUES ('p1', '')$$,
                 '23514', NULL, 'empty display name');
SELECT throws_ok($$INSERT INTO profiles (user_id, display_name) VALUES ('p1', repeat('x', 101))$$,
                 '23514', NULL, 'display name of 101 characters');
SELECT lives_ok($$INSERT INTO profiles (user_id, display_name) VALUES ('p2', repeat('😀', 100))$$,
                '100 emoji are a valid display name');
SELECT throws_ok($$INSERT INTO profiles (user_id, display_name) VALUES ('p1', E'a\nb')$$,
                 '23514', NULL, 'display name with a control character');
SELECT throws_ok($$INSERT INTO profiles (user_id, display_name) VALUES ('p1', E'a\u0085b')$$,
                 '23514', NULL, 'display name with a C1 control character');
SELECT lives_ok($$INSERT INTO profiles (user_id, display_name) VALUES ('p5', E'line\u2028sep\u00a0nbsp')$$,
                'U+2028 and U+00A0 are not control characters');
SELECT throws_ok($$INSERT INTO profiles (user_id, display_name, avatar_url) VALUES ('p1', 'x', 'http://a.example/x.png')$$,
                 '23514', NULL, 'avatar url without https');
SELECT throws_ok($$INSERT INTO profiles (user_id, display_name, avatar_url) VALUES ('p1', 'x', 'https://a.example/' || repeat('x', 2031))$$,
                 '23514', NULL, 'avatar url longer than 2048 bytes');
SELECT lives_ok($$INSERT INTO profiles (user_id, display_name, avatar_url) VALUES ('p3', 'x', 'https://a.example/' || repeat('x', 2030))$$,
                'avatar url of 2048 bytes');
SELECT lives_ok($$INSERT INTO profiles (user_id, display_name, avatar_url) VALUES ('p6', 'x', 'HTTPS://a.example/x.png')$$,
                'the scheme is case-insensitive');
SELECT throws_ok($$INSERT INTO profiles (user_id, display_name, avatar_url) VALUES ('p1', 'x', 'ftp://https://a.example/')$$,
                 '23514', NULL, 'https:// must be the scheme');
SELECT throws_ok($$INSERT INTO profiles (user_id, display_name, preferences) VALUES ('p1', 'x', '[]')$$,
                 '23514', NULL, 'preferences that are not an object');
SELECT throws_ok($$INSERT INTO profiles (user_id, display_name, preferences) VALUES ('p1', 'x', jsonb_build_object('k', repeat('x', 16380)))$$,
                 '23514', NULL, 'preferences over the 16 KiB backstop');
-- 8 KiB of compact JSON ({"k0":0,"k1":0,...}) is longer in jsonb's text form; it must be stored
SELECT lives_ok($$INSERT INTO profiles (user_id, display_name, preferences)
                  SELECT 'p4', 'x', jsonb_object_agg('k' || i, 0) FROM generate_series(0, 899) i$$,
                'preferences of just under 8 KiB compact JSON are accepted');
SELECT cmp_ok((SELECT octet_length(replace(replace(preferences::text, ': ', ':'), ', ', ','))
                 FROM profiles WHERE user_id = 'p4'), '<=', 8192, 'that object is <= 8 KiB as compact JSON');
SELECT cmp_ok((SELECT octet_length(preferences::text) FROM profiles WHERE user_id = 'p4'), '>', 8192,
              'and over 8 KiB in jsonb text form');
SELECT throws_ok($$INSERT INTO profiles (user_id, display_name, version) VALUES ('p1', 'x', 0)$$,
                 '23514', NULL, 'version 0');
SELECT throws_ok($$INSERT INTO profiles (user_id, display_name) VALUES ('p2', 'again')$$,
                 '23505', NULL, 'duplicate profile');

-- watchlist
INSERT INTO watchlist_items (user_id, video_id) VALUES ('w1', 'v1');
SELECT throws_ok($$INSERT INTO watchlist_items (user_id, video_id) VALUES ('w1', 'v1')$$,
                 '23505', NULL, 'duplicate watchlist row');

-- history
SELECT throws_ok($$INSERT INTO history_entries (user_id, video_id, position_seconds) VALUES ('h1', 'v1', -1)$$,
                 '23514', NULL, 'negative position');
SELECT throws_ok($$INSERT INTO history_entries (user_id, video_id, position_seconds) VALUES ('h1', 'v1', 86401)$$,
                 '23514', NULL, 'position over 86400');
SELECT throws_ok($$INSERT INTO history_entries (user_id, video_id, position_seconds, duration_seconds) VALUES ('h1', 'v1', 101, 100)$$,
                 '23514', NULL, 'position > duration');
SELECT throws_ok($$INSERT INTO history_entries (user_id, video_id, position_seconds, duration_seconds) VALUES ('h1', 'v1', 0, -5)$$,
                 '23514', NULL, 'negative duration');
SELECT throws_ok($$INSERT INTO history_entries (user_id, video_id, position_seconds) VALUES ('h1', 'v1', NULL)$$,
                 '23502', NULL, 'position is required');
SELECT lives_ok($$INSERT INTO history_entries (user_id, video_id, position_seconds, duration_seconds) VALUES ('h1', 'v1', 100, 100)$$,
                'position = duration (finished)');
SELECT lives_ok($$INSERT INTO history_entries (user_id, video_id, position_seconds) VALUES ('h1', 'v1', 86400)$$,
                'position 86400 without duration');

-- ratings
SELECT throws_ok($$INSERT INTO ratings (user_id, video_id, rating) VALUES ('r1', 'v1', 0)$$,
                 '23514', NULL, 'rating 0');
SELECT throws_ok($$INSERT INTO ratings (user_id, video_id, rating) VALUES ('r1', 'v1', 6)$$,
                 '23514', NULL, 'rating 6');
SELECT throws_ok($$INSERT INTO ratings (user_id, video_id, rating, review) VALUES ('r1', 'v1', 3, repeat('é', 2001))$$,
                 '23514', NULL, 'review of 2001 characters');
SELECT lives_ok($$INSERT INTO ratings (user_id, video_id, rating, review) VALUES ('r1', 'v1', 5, repeat('é', 2000))$$,
                'review of 2000 characters');
SELECT throws_ok($$INSERT INTO ratings (user_id, video_id, rating) VALUES ('r1', 'v1', 4)$$,
                 '23505', NULL, 'duplicate rating for one user and video');

-- sequence, outbox, dead letters
SELECT throws_ok($$INSERT INTO user_event_seq VALUES ('s1', 0, now())$$,
                 '23514', NULL, 'sequence 0');
SELECT throws_ok($$INSERT INTO outbox (user_id, seq, event_type, payload, created_at) VALUES ('o1', 1, 'ProfileGone', '{}', now())$$,
                 '23514', NULL, 'unknown event type');
SELECT throws_ok($$INSERT INTO outbox (user_id, seq, event_type, payload, created_at) VALUES ('o1', 0, 'ProfileUpdated', '{}', now())$$,
                 '23514', NULL, 'outbox sequence 0');
SELECT throws_ok($$INSERT INTO outbox (user_id, seq, event_type, payload, traceparent, created_at) VALUES ('o1', 1, 'ProfileUpdated', '{}', '00-XYZ-bad-01', now())$$,
                 '23514', NULL, 'bad traceparent');
SELECT throws_ok($$INSERT INTO outbox (user_id, seq, event_type, payload, traceparent, created_at) VALUES ('o1', 1, 'ProfileUpdated', '{}', '00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01', now())$$,
                 '23514', NULL, 'upper-case traceparent');
SELECT lives_ok($$INSERT INTO outbox (user_id, seq, event_type, payload, traceparent, created_at) VALUES ('o1', 1, 'ProfileUpdated', '{}', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', now())$$,
                'valid traceparent');
SELECT throws_ok($$INSERT INTO outbox (user_id, seq, event_type, payload, partition_no, created_at) VALUES ('o1', 2, 'ProfileUpdated', '{}', 3, now())$$,
                 '428C9', NULL, 'partition_no cannot be written');
SELECT throws_ok($$INSERT INTO outbox_dead_letters (user_id, seq, event_id, error) VALUES ('o1', 99, gen_random_uuid(), 'x')$$,
                 '23503', NULL, 'dead letter without its outbox row');

-- idempotency records
SELECT throws_ok($$INSERT INTO idempotency_keys (caller, idem_key, request_hash, status, response_body, expires_at) VALUES ('c', E'bad\tkey', sha256('x'), 200, '', now())$$,
                 '23514', NULL, 'idempotency key with a control character');
SELECT throws_ok($$INSERT INTO idempotency_keys (caller, idem_key, request_hash, status, response_body, expires_at) VALUES ('c', repeat('k', 256), sha256('x'), 200, '', now())$$,
                 '23514', NULL, 'idempotency key of 256 characters');
SELECT throws_ok($$INSERT INTO idempotency_keys (caller, idem_key, request_hash, status, response_body, expires_at) VALUES ('c', 'k', '\x00'::bytea, 200, '', now())$$,
                 '23514', NULL, 'request hash that is not 32 bytes');
SELECT throws_ok($$INSERT INTO idempotency_keys (caller, idem_key, request_hash, status, response_body, expires_at) VALUES ('c', 'k', sha256('x'), 199, '', now())$$,
                 '23514', NULL, 'stored status below 200');
SELECT throws_ok($$INSERT INTO idempotency_keys (caller, idem_key, request_hash, status, response_body, expires_at) VALUES ('c', 'k', sha256('x'), 600, '', now())$$,
                 '23514', NULL, 'stored status above 599');
SELECT lives_ok($$INSERT INTO idempotency_keys (caller, idem_key, request_hash, status, response_body, expires_at) VALUES ('c', repeat('~', 255), sha256('x'), 201, '{}', now())$$,
                'a key of 255 printable characters');

SELECT * FROM finish();
ROLLBACK;
