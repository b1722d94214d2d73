-- One wrk script for every endpoint: BENCH_OP selects the request, BENCH_USERS the user range,
-- BENCH_TOKEN an admin JWT (admin may read and write any user's resources). With
-- BENCH_TOKENS=<file> ("<user> <token>" per line) every request is made by a random one of
-- those users, with its own token, on its own resources: many callers instead of one.
local op = os.getenv("BENCH_OP") or "health"
local users = tonumber(os.getenv("BENCH_USERS") or "10000")
local token = os.getenv("BENCH_TOKEN") or ""
local tokens_file = os.getenv("BENCH_TOKENS")
local callers = {}
local counter = 0

wrk.headers["Authorization"] = "Bearer " .. token
wrk.headers["Content-Type"] = "application/json"

function init(args)
    math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0))
    if tokens_file then
        for line in io.lines(tokens_file) do
            local u, t = line:match("^(%S+)%s+(%S+)$")
            if u then
                callers[#callers + 1] = {u, {["Authorization"] = "Bearer " .. t}}
            end
        end
    end
end

local caller_headers = nil

local function user()
    if #callers > 0 then
        local c = callers[math.random(1, #callers)]
        caller_headers = c[2]
        return c[1]
    end
    return "u" .. math.random(1, users)
end

request = function()
    counter = counter + 1
    if op == "health" then
        return wrk.format("GET", "/health/live", {})
    elseif op == "get_profile" then
        return wrk.format("GET", "/profiles/" .. user())
    elseif op == "get_watchlist" then
        local path = "/profiles/" .. user() .. "/watchlist"
        return wrk.format("GET", path, caller_headers)
    elseif op == "get_history" then
        return wrk.format("GET", "/profiles/" .. user() .. "/history")
    elseif op == "get_continue" then
        return wrk.format("GET", "/profiles/" .. user() .. "/history?view=continue")
    elseif op == "get_ratings" then
        return wrk.format("GET", "/profiles/" .. user() .. "/ratings")
    elseif op == "post_watchlist" then
        return wrk.format("POST", "/profiles/" .. user() .. "/watchlist", nil,
            '{"videoId":"b' .. math.random(1, 1000000) .. '"}')
    elseif op == "post_history" then
        return wrk.format("POST", "/profiles/" .. user() .. "/history", nil,
            '{"videoId":"v' .. math.random(1, 100000) .. '","positionSeconds":' ..
            math.random(0, 3000) .. ',"durationSeconds":3000}')
    elseif op == "post_rating" then
        return wrk.format("POST", "/profiles/" .. user() .. "/ratings", nil,
            '{"videoId":"v' .. math.random(1, 100000) .. '","rating":' .. math.random(1, 5) .. '}')
    elseif op == "put_profile" then
        return wrk.format("PUT", "/profiles/" .. user(), nil,
            '{"displayName":"Bench ' .. counter .. '","preferences":{"language":"en"}}')
    elseif op == "mixed" then
        -- 80 % reads, 20 % writes
        local r = math.random(1, 100)
        if r <= 40 then
            return wrk.format("GET", "/profiles/" .. user() .. "/watchlist")
        elseif r <= 60 then
            return wrk.format("GET", "/profiles/" .. user() .. "/history?view=continue")
        elseif r <= 80 then
            return wrk.format("GET", "/profiles/" .. user())
        elseif r <= 90 then
            return wrk.format("POST", "/profiles/" .. user() .. "/watchlist", nil,
                '{"videoId":"b' .. math.random(1, 1000000) .. '"}')
        else
            return wrk.format("POST", "/profiles/" .. user() .. "/history", nil,
                '{"videoId":"v' .. math.random(1, 100000) .. '","positionSeconds":' ..
                math.random(0, 3000) .. ',"durationSeconds":3000}')
        end
    end
end

done = function(summary, latency, requests)
    local errs = summary.errors
    io.write(string.format("BENCH_RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f requests=%d " ..
        "non2xx=%d connect_err=%d read_err=%d timeouts=%d\n",
        summary.requests / (summary.duration / 1e6),
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        summary.requests, errs.status, errs.connect, errs.read, errs.timeout))
end
