-- Bulk loader for benchmarks: :users users (psql -v users=N), each with a profile, 50
-- watchlist items, 100 history entries and 20 ratings. Rows go straight into the tables
-- (no outbox rows): this is read data, not an event backlog.
\set ON_ERROR_STOP on
BEGIN;
INSERT INTO profiles (user_id, display_name, preferences, version)
SELECT 'u' || g, 'User ' || g, '{"language":"en","subtitles":true,"autoplay":false}', 1
FROM generate_series(1, :users) g
ON CONFLICT DO NOTHING;
INSERT INTO watchlist_items (user_id, video_id, added_at)
SELECT 'u' || g, 'v' || (g * 7 + i) % 100000, now() - (i || ' minutes')::interval
FROM generate_series(1, :users) g, generate_series(1, 50) i
ON CONFLICT DO NOTHING;
INSERT INTO history_entries (user_id, video_id, position_seconds, duration_seconds, watched_at)
SELECT 'u' || g, 'v' || (g * 13 + i % 40) % 100000, (i * 37) % 3000, 3000,
       now() - (i || ' hours')::interval
FROM generate_series(1, :users) g, generate_series(1, 100) i;
-- view=continue reads resume_points (V003), which api_history_add keeps up to date: the
-- latest entry per video of the users just loaded.
\set from 1
\set to :users
\ir load_resume_points.sql
INSERT INTO ratings (user_id, video_id, rating, review)
SELECT 'u' || g, 'v' || (g * 17 + i) % 100000, 1 + (g + i) % 5, 'review ' || i
FROM generate_series(1, :users) g, generate_series(1, 20) i
ON CONFLICT DO NOTHING;
COMMIT;
-- as autovacuum leaves a table that is read more than written: visibility map set, so the
-- covering indexes answer pages from the index alone
VACUUM (ANALYZE);
