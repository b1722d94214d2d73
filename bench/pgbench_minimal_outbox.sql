-- The floor a write can reach: a minimal transactional outbox, one domain row and one outbox
-- row in one transaction, no NOTIFY, no sequence table, no idempotency record (issue 15's
-- reference for POST watchlist). Users 'm…' and a random seq keep it off the API's rows.
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
COMMIT;
