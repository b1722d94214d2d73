-- V010 snapshots: snapshot_start/snapshot_step write a user's current state as ordinary outbox
-- events with the next sequence numbers, tagged with the snapshot id, and keep progress so no
-- user is emitted twice in one snapshot (docs/events.md, Snapshots).
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SELECT plan(27);

SELECT has_column('outbox', 'snapshot_id', 'outbox rows can name their snapshot');
SELECT col_is_null('outbox', 'snapshot_id', 'snapshot_id is nullable (live writes)');
SELECT has_table('snapshots', 'snapshot progress table');
SELECT function_returns('snapshot_start', ARRAY['text'], 'uuid');

-- t-sn1: profile at version 2, watchlist {w1, w3} (w2 removed), rating w1 replaced, two resume
-- points (w1's latest is the 40 s one even though an older watchedAt came later).
DO $$
BEGIN
    PERFORM api_put_profile('t-sn1', NULL, NULL, 60, NULL, 't-sn1', 'A', NULL, NULL, NULL);
    PERFORM api_put_profile('t-sn1', NULL, NULL, 60, NULL, 't-sn1', 'B', NULL, NULL, NULL);
    PERFORM api_watchlist_add('t-sn1', NULL, NULL, 60, NULL, 't-sn1', 'w1');
    PERFORM api_watchlist_add('t-sn1', NULL, NULL, 60, NULL, 't-sn1', 'w2');
    PERFORM api_watchlist_add('t-sn1', NULL, NULL, 60, NULL, 't-sn1', 'w3');
    PERFORM api_watchlist_remove('t-sn1', NULL, NULL, 60, NULL, 't-sn1', 'w2');
    PERFORM api_rating_put('t-sn1', NULL, NULL, 60, NULL, 't-sn1', 'w1', 2, NULL);
    PERFORM api_rating_put('t-sn1', NULL, NULL, 60, NULL, 't-sn1', 'w1', 5, 'gr"eat');
    PERFORM api_history_add('t-sn1', NULL, NULL, 60, NULL, 't-sn1', 'w1', 40, 100,
        '2026-01-02T00:00:00Z');
    PERFORM api_history_add('t-sn1', NULL, NULL, 60, NULL, 't-sn1', 'w1', 10, 100,
        '2026-01-01T00:00:00Z');
    PERFORM api_history_add('t-sn1', NULL, NULL, 60, NULL, 't-sn1', 'w4', 7, NULL,
        '2026-01-03T00:00:00.123456Z');
    -- t-sn2: had an item, removed it: a sequence but no state.
    PERFORM api_watchlist_add('t-sn2', NULL, NULL, 60, NULL, 't-sn2', 'w1');
    PERFORM api_watchlist_remove('t-sn2', NULL, NULL, 60, NULL, 't-sn2', 'w1');
END;
$$;

SELECT is((SELECT last_seq FROM user_event_seq WHERE user_id = 't-sn1'), 11::bigint,
          't-sn1 has 11 live events');

-- ---------------------------------------------------------------- one user
SELECT snapshot_start('t-sn1') AS sid \gset
SELECT results_eq($$SELECT only_user, users_total, users_done, events_total, last_user_id,
                           finished_at IS NULL FROM snapshots WHERE snapshot_id = '$$ || :'sid' || $$'$$,
    $$VALUES ('t-sn1'::text, 1::bigint, 0::bigint, 0::bigint, NULL::text, true)$$,
    'a --user snapshot starts with a total of one user');
SELECT results_eq($$SELECT * FROM snapshot_step('$$ || :'sid' || $$')$$,
    $$VALUES ('t-sn1'::text, 6)$$, 'the step emits profile + 2 items + 1 rating + 2 resume points');
SELECT results_eq(
    $$SELECT seq, event_type, payload::text FROM outbox
       WHERE user_id = 't-sn1' AND snapshot_id = '$$ || :'sid' || $$' ORDER BY seq$$,
    $$VALUES (12::bigint, 'ProfileUpdated', '{"userId":"t-sn1","version":2}'),
             (13, 'WatchlistUpdated', '{"userId":"t-sn1","videoId":"w1","action":"added"}'),
             (14, 'WatchlistUpdated', '{"userId":"t-sn1","videoId":"w3","action":"added"}'),
             (15, 'VideoRated', '{"userId":"t-sn1","videoId":"w1","rating":5,"review":"gr\"eat"}'),
             (16, 'HistoryUpdated', '{"userId":"t-sn1","videoId":"w1","positionSeconds":40,"durationSeconds":100,"watchedAt":"2026-01-02T00:00:00.000Z"}'),
             (17, 'HistoryUpdated', '{"userId":"t-sn1","videoId":"w4","positionSeconds":7,"durationSeconds":null,"watchedAt":"2026-01-03T00:00:00.123Z"}')$$,
    'the current state as ordinary events, with the next sequence numbers, payloads as live writes build them');
SELECT is((SELECT last_seq FROM user_event_seq WHERE user_id = 't-sn1'), 17::bigint,
          'the user''s sequence moved past the snapshot''s events');
SELECT is((SELECT count(*) FROM outbox WHERE user_id = 't-sn1' AND snapshot_id IS NULL), 11::bigint,
          'live events carry no snapshot id');
SELECT ok((SELECT bool_and(created_at >= (SELECT max(created_at) FROM outbox o2
                                           WHERE o2.user_id = 't-sn1' AND o2.seq <= 11))
             FROM outbox WHERE user_id = 't-sn1' AND seq > 11),
          'ce_time does not go backwards');
SELECT results_eq($$SELECT users_done, events_total, last_user_id FROM snapshots
                     WHERE snapshot_id = '$$ || :'sid' || $$'$$,
    $$VALUES (1::bigint, 6::bigint, 't-sn1'::text)$$,
    'progress moved in the same statement');
SELECT is_empty($$SELECT * FROM snapshot_step('$$ || :'sid' || $$')$$,
    'the next step finds nothing left');
SELECT isnt((SELECT finished_at FROM snapshots WHERE snapshot_id = :'sid'), NULL,
            'and marks the snapshot finished');
SELECT is_empty($$SELECT * FROM snapshot_step('$$ || :'sid' || $$')$$,
    'a finished snapshot emits nothing more');
SELECT is((SELECT count(*) FROM outbox WHERE snapshot_id = :'sid'), 6::bigint,
          'the user was emitted once');

-- ---------------------------------------------------------------- all users
SELECT snapshot_start(NULL) AS aid \gset
SELECT is((SELECT users_total FROM snapshots WHERE snapshot_id = :'aid'),
          (SELECT count(*) FROM user_event_seq), 'an --all snapshot counts the users it will take');
CREATE TEMP TABLE steps (n serial, user_id text, events integer);
CREATE TEMP TABLE cur AS SELECT :'aid'::uuid AS id;
-- The first user, then a "crash" (nothing kept but the table), then the rest: resuming goes on
-- after the last user done.
INSERT INTO steps (user_id, events) SELECT * FROM snapshot_step(:'aid');
DO $$
DECLARE
    r record;
BEGIN
    LOOP
        SELECT * INTO r FROM snapshot_step((SELECT id FROM cur));
        EXIT WHEN NOT FOUND;
        INSERT INTO steps (user_id, events) VALUES (r.user_id, r.events);
    END LOOP;
END;
$$;
SELECT is((SELECT count(*) FROM steps), (SELECT count(*) FROM user_event_seq),
          'every user with a sequence was taken');
SELECT is((SELECT count(DISTINCT user_id) FROM steps), (SELECT count(*) FROM steps),
          'no user was taken twice');
SELECT ok((SELECT bool_and(a.user_id < b.user_id) FROM steps a JOIN steps b ON b.n = a.n + 1),
          'users are taken in user_id order');
SELECT results_eq($$SELECT events FROM steps WHERE user_id IN ('t-sn1', 't-sn2') ORDER BY user_id$$,
    $$VALUES (6), (0)$$, 'a user with no state left emits nothing');
SELECT is((SELECT last_seq FROM user_event_seq WHERE user_id = 't-sn2'), 2::bigint,
          'and keeps its sequence');
SELECT results_eq($$SELECT users_done, events_total, finished_at IS NOT NULL FROM snapshots
                     WHERE snapshot_id = '$$ || :'aid' || $$'$$,
    $$SELECT count(*), sum(events), true FROM steps$$, 'totals match what was emitted');
SELECT is((SELECT count(*) FROM outbox WHERE snapshot_id = :'aid'),
          (SELECT sum(events) FROM steps), 'one outbox row per event counted');

-- ---------------------------------------------------------------- edge cases
-- State written around the API has no sequence row: --user still snapshots it from 1.
INSERT INTO watchlist_items (user_id, video_id) VALUES ('t-sn3', 'w9');
SELECT snapshot_start('t-sn3') AS uid3 \gset
SELECT results_eq($$SELECT * FROM snapshot_step('$$ || :'uid3' || $$')$$,
    $$VALUES ('t-sn3'::text, 1)$$, 'a user without a sequence row is snapshotted');
SELECT results_eq($$SELECT seq, last_seq FROM outbox JOIN user_event_seq USING (user_id)
                     WHERE user_id = 't-sn3'$$,
    $$VALUES (1::bigint, 1::bigint)$$, 'its sequence starts at 1');
SELECT throws_ok($$SELECT * FROM snapshot_step('00000000-0000-0000-0000-000000000000')$$,
    'P0002', NULL, 'an unknown snapshot id is an error');

SELECT * FROM finish();
ROLLBACK;
