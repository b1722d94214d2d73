-- bench/pgbench_minimal_outbox.sql plus the NOTIFY the write functions sent before V007: what
-- a notifying commit costs (a database-wide lock held through the commit's WAL flush).
\set u random(1, 10000)
\set v random(1, 1000000)
\set s random(1, 9000000000000000000)
BEGIN;
INSERT INTO watchlist_items (user_id, video_id) VALUES ('m' || :u, 'p' || :v)
    ON CONFLICT DO NOTHING;
INSERT INTO outbox (user_id, seq, event_type, payload, created_at)
    VALUES ('m' || :u, :s, 'WatchlistUpdated',
            json_build_object('userId', 'm' || :u, 'videoId', 'p' || :v, 'action', 'added'),
            now());
SELECT pg_notify('outbox_new', '7');
COMMIT;
