-- V005 history retention: history_retention_purge() removes at most a batch of the entries older
-- than the retention, oldest first, and never touches recent entries or resume points.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SELECT plan(17);

SELECT has_function('public', 'history_retention_purge', ARRAY['integer', 'integer']);
SELECT is_definer('public', 'history_retention_purge', ARRAY['integer', 'integer'],
                  'runs as the owner: the relay role holds no privilege on history_entries');
SELECT has_index('history_entries', 'history_entries_watched_idx', 'watched_at',
                 'the batches scan an index on watched_at');

-- 30 old entries (35 to 64 days) and 5 recent ones for one user, written by the API function so
-- that resume points exist; video h-old has old entries only.
SELECT lives_ok($$SELECT api_history_add(NULL, NULL, NULL, 60, NULL, 'h1',
                                         CASE WHEN g <= 10 THEN 'h-old' ELSE 'h' || (g % 3) END,
                                         g, 5000, now() - (34 + g) * interval '1 day')
                    FROM generate_series(1, 30) g$$, 'old entries');
SELECT lives_ok($$SELECT api_history_add(NULL, NULL, NULL, 60, NULL, 'h1', 'h' || (g % 3), 200 + g,
                                         5000, now() - g * interval '1 hour')
                    FROM generate_series(1, 5) g$$, 'recent entries');
CREATE TEMP TABLE rp_before AS SELECT * FROM resume_points WHERE user_id = 'h1';
CREATE TEMP TABLE oldest AS
    SELECT entry_id FROM history_entries WHERE user_id = 'h1' ORDER BY watched_at LIMIT 10;

SELECT is(history_retention_purge(30, 10), 10, 'one call removes at most the batch');
SELECT is_empty($$SELECT entry_id FROM history_entries WHERE entry_id IN (SELECT entry_id FROM oldest)$$,
                'the oldest go first');
SELECT is((SELECT count(*)::int FROM history_entries WHERE user_id = 'h1'
            AND watched_at < now() - interval '30 days'), 20, 'the rest of the old ones wait');
SELECT is(history_retention_purge(30, 100), 20, 'a larger batch takes what is left');
SELECT is(history_retention_purge(30, 100), 0, 'then nothing is old enough');
SELECT is((SELECT count(*)::int FROM history_entries WHERE user_id = 'h1'), 5,
          'recent entries are kept');
SELECT is(history_retention_purge(365, 100), 0, 'a longer retention removes nothing here');
SELECT set_eq($$SELECT user_id, video_id, entry_id, position_seconds, duration_seconds, watched_at
                  FROM resume_points WHERE user_id = 'h1'$$,
              $$SELECT user_id, video_id, entry_id, position_seconds, duration_seconds, watched_at
                  FROM rp_before$$,
              'resume points are untouched, also for a video whose history is all gone');
SELECT is((SELECT count(*)::int FROM api_page_continue('h1', 100, NULL, NULL)
            WHERE video_id = 'h-old'), 1, 'the continue view still offers h-old');

SELECT throws_ok($$SELECT history_retention_purge(0, 10)$$, '22023', NULL,
                 'a retention below one day is refused');
SELECT throws_ok($$SELECT history_retention_purge(30, 0)$$, '22023', NULL,
                 'an empty batch is refused');
SELECT throws_ok($$SELECT history_retention_purge(30, 10001)$$, '22023', NULL,
                 'a batch over 10000 is refused');

SELECT * FROM finish();
ROLLBACK;
