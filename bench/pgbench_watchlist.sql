-- The write path's SQL transaction, as profile-api sends it for POST watchlist (one call).
\set u random(1, 10000)
\set v random(1, 1000000)
SELECT status FROM api_watchlist_add('u' || :u, NULL, NULL, 86400,
    '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', 'u' || :u, 'p' || :v);
