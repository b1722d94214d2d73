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
-- BENCH_SKEW=s > 0 draws users Zipf-distributed (rank k with probability ~ 1/k^s, s ~ 1.1 for
-- real traffic: few users are hot, most are cold) instead of uniformly; 0 or unset: uniform.
local skew = tonumber(os.getenv("BENCH_SKEW") or "0")

-- Zipf sampling by rejection-inversion (Hoermann and Derflinger 1996): O(1) per draw, no table,
-- so it works for a million users in every wrk thread.
local function zipf_sampler(n, s)
    local function helper1(x) -- log(1 + x) / x
        if math.abs(x) > 1e-8 then return math.log(1 + x) / x end
        return 1 - x * (0.5 - x * (1 / 3 - 0.25 * x))
    end
    local function helper2(x) -- (exp(x) - 1) / x
        if math.abs(x) > 1e-8 then return (math.exp(x) - 1) / x end
        return 1 + x * 0.5 * (1 + x / 3 * (1 + 0.25 * x))
    end
    local function h(x) return math.exp(-s * math.log(x)) end
    local function hint(x) local lx = math.log(x); return helper2((1 - s) * lx) * lx end
    local function hinv(x)
        local t = x * (1 - s)
        if t < -1 then t = -1 end
        return math.exp(helper1(t) * x)
    end
    local hx1 = hint(1.5) - 1
    local hn = hint(n + 0.5)
    local sthr = 2 - hinv(hint(2.5) - h(2))
    return function()
        while true do
            local u = hn + math.random() * (hx1 - hn)
            local x = hinv(u)
            local k = math.floor(x + 0.5)
            if k < 1 then k = 1 elseif k > n then k = n end
            if k - x <= sthr or u >= hint(k + 0.5) - h(k) then return k end
        end
    end
end

-- A number in 1..n: uniform, or Zipf over ranks spread across 1..n by a fixed permutation (a
-- multiplier prime to n), so the hot users are not the first ones loaded.
local samplers = {}
local function pick(n)
    if skew <= 0 or n < 2 then return math.random(1, n) end
    local z = samplers[n]
    if z == nil then
        z = zipf_sampler(n, skew)
        samplers[n] = z
    end
    local mult = n % 1000003 == 0 and 1000033 or 1000003 -- both prime
    return ((z() - 1) * mult) % n + 1
end

wrk.headers["Authorization"] = "Bearer " .. token
wrk.headers["Content-Type"] = "application/json"

-- Reads are the same few requests over and over: built once in init(), so that wrk, which
-- shares the cores with the server, spends per request only the pick of a random one.
local read_paths = {
    get_profile = function(u) return "/profiles/" .. u end,
    get_watchlist = function(u) return "/profiles/" .. u .. "/watchlist" end,
    get_history = function(u) return "/profiles/" .. u .. "/history" end,
    get_continue = function(u) return "/profiles/" .. u .. "/history?view=continue" end,
    get_ratings = function(u) return "/profiles/" .. u .. "/ratings" end,
}
local prebuilt = nil

local function prebuild()
    if op == "health" then
        prebuilt = {wrk.format("GET", "/health/live", {})}
    elseif read_paths[op] then
        prebuilt = {}
        if #callers > 0 then
            for _, c in ipairs(callers) do
                -- callers read with their own token on GET watchlist (as request() did)
                local h = op == "get_watchlist" and c[2] or nil
                prebuilt[#prebuilt + 1] = wrk.format("GET", read_paths[op](c[1]), h)
            end
        else
            for i = 1, users do
                prebuilt[i] = wrk.format("GET", read_paths[op]("u" .. i))
            end
        end
    end
end

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
    prebuild()
end

local caller_headers = nil

local function user()
    if #callers > 0 then
        local c = callers[pick(#callers)]
        caller_headers = c[2]
        return c[1]
    end
    return "u" .. pick(users)
end

local function post_watchlist()
    return wrk.format("POST", "/profiles/" .. user() .. "/watchlist", nil,
        '{"videoId":"b' .. math.random(1, 1000000) .. '"}')
end

local function post_history()
    return wrk.format("POST", "/profiles/" .. user() .. "/history", nil,
        '{"videoId":"v' .. math.random(1, 100000) .. '","positionSeconds":' ..
        math.random(0, 3000) .. ',"durationSeconds":3000}')
end

request = function()
    if prebuilt then
        return prebuilt[pick(#prebuilt)]
    end
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
        return post_watchlist()
    elseif op == "post_history" then
        return post_history()
    elseif op == "post_rating" then
        return wrk.format("POST", "/profiles/" .. user() .. "/ratings", nil,
            '{"videoId":"v' .. math.random(1, 100000) .. '","rating":' .. math.random(1, 5) .. '}')
    elseif op == "put_profile" then
        return wrk.format("PUT", "/profiles/" .. user(), nil,
            '{"displayName":"Bench ' .. counter .. '","preferences":{"language":"en"}}')
    elseif op == "mixed_rw" then
        -- reads beside saturating writes: 70 % GET watchlist, 20 % POST watchlist, 10 % POST
        -- history
        local r = math.random(1, 100)
        if r <= 70 then
            return wrk.format("GET", "/profiles/" .. user() .. "/watchlist")
        elseif r <= 90 then
            return post_watchlist()
        else
            return post_history()
        end
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
            return post_watchlist()
        else
            return post_history()
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
