-- Included by load.sql and load_scale.sql (psql variables :from and :to): the resume points
-- (V003) of users u<from>..u<to>, i.e. the latest history entry per video, as api_history_add
-- would have kept them had the entries come through the API.
INSERT INTO resume_points AS rp (user_id, video_id, entry_id, position_seconds, duration_seconds,
                                 watched_at)
SELECT DISTINCT ON (e.user_id, e.video_id)
       e.user_id, e.video_id, e.entry_id, e.position_seconds, e.duration_seconds, e.watched_at
FROM history_entries e
WHERE e.user_id IN (SELECT 'u' || g FROM generate_series(:from, :to) g)
ORDER BY e.user_id, e.video_id, e.watched_at DESC, e.entry_id DESC
ON CONFLICT (user_id, video_id) DO UPDATE
    SET entry_id = EXCLUDED.entry_id, position_seconds = EXCLUDED.position_seconds,
        duration_seconds = EXCLUDED.duration_seconds, watched_at = EXCLUDED.watched_at
    WHERE (EXCLUDED.watched_at, EXCLUDED.entry_id) > (rp.watched_at, rp.entry_id);
