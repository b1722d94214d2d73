-- Scale loader for `make bench-scale`: adds users :from..:to (psql -v from=N -v to=M), each
-- with a profile, 5 watchlist items, 10 history entries and 2 ratings (lighter lists than
-- bench/load.sql so that a million users fit this machine). Rows go straight into the tables
-- (resume_points filled from the history as api_history_add would).
\set ON_ERROR_STOP on
BEGIN;
INSERT INTO profiles (user_id, display_name, preferences, version)
SELECT 'u' || g, 'User ' || g, '{"language":"en","subtitles":true}', 1
FROM generate_series(:from, :to) g;
INSERT INTO watchlist_items (user_id, video_id, added_at)
SELECT 'u' || g, 'v' || (g * 7 + i) % 100000, now() - (i || ' minutes')::interval
FROM generate_series(:from, :to) g, generate_series(1, 5) i;
INSERT INTO history_entries (user_id, video_id, position_seconds, duration_seconds, watched_at)
SELECT 'u' || g, 'v' || (g * 13 + i) % 100000, (i * 37) % 3000, 3000,
       now() - (i || ' hours')::interval
FROM generate_series(:from, :to) g, generate_series(1, 10) i;
-- view=continue reads resume_points (V003), which api_history_add keeps up to date: the
-- latest entry per video of the users just loaded.
\ir load_resume_points.sql
INSERT INTO ratings (user_id, video_id, rating, review)
SELECT 'u' || g, 'v' || (g * 17 + i) % 100000, 1 + (g + i) % 5, NULL
FROM generate_series(:from, :to) g, generate_series(1, 2) i;
COMMIT;
-- as autovacuum leaves a table that is read more than written: visibility map set, so the
-- covering indexes answer pages from the index alone
VACUUM (ANALYZE);
