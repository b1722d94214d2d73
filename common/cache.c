/*
 * Redis key builders and the Lua scripts behind the cache (fill, invalidate) and the shared
 * rate limiter. The protocol they implement is described in docs/cache.md.
 */
#include "common/stringify.h"
#include "common/cache.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* An id is used verbatim inside the hash tag only when it cannot break the key shape. */
#define VERBATIM_MAX 64
/* prefix + braces + suffix of every key built here ("rla:" ... ":hist") stay within 16 */
_Static_assert(VERBATIM_MAX + 16 <= CACHE_KEY_MAX, "a verbatim key must fit CACHE_KEY_MAX");

static int is_verbatim(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        unsigned char c = (unsigned char)s[n];
        if (n >= VERBATIM_MAX || c <= 0x20 || c >= 0x7f || c == '{' || c == '}')
            return 0;
    }
    return n > 0;
}

static uint64_t fnv1a64(const char *s, uint64_t h)
{
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

/*
 * Writes "<prefix>{<tag>}<suffix>". Ids outside the safe shape (too long, braces, spaces,
 * non-ASCII: possible for a JWT `sub` or a client address) are replaced by "#" and 128 bits
 * of hash, so every key stays short, has exactly one hash tag and is the same in every process.
 */
static void build(char *out, const char *prefix, const char *tag, const char *suffix)
{
    if (tag == NULL)
        tag = "";
    if (is_verbatim(tag)) { /* on every request: no snprintf */
        size_t p = strlen(prefix), t = strlen(tag), x = strlen(suffix);
        memcpy(out, prefix, p);
        out[p] = '{';
        memcpy(out + p + 1, tag, t);
        out[p + 1 + t] = '}';
        memcpy(out + p + 2 + t, suffix, x + 1);
    } else {
        uint64_t a = fnv1a64(tag, 0xcbf29ce484222325ULL);
        uint64_t b = fnv1a64(tag, 0x84222325cbf29ce4ULL ^ a);
        snprintf(out, CACHE_KEY_MAX, "%s{#%016llx%016llx}%s", prefix, (unsigned long long)a,
                 (unsigned long long)b, suffix);
    }
}

void cache_key_list(char *out, const char *user_id, cache_list_t list)
{
    build(out, "pc:", user_id, list == CACHE_LIST_HISTORY ? ":hist" : ":wl");
}

void cache_key_version(char *out, const char *user_id)
{
    build(out, "pc:", user_id, ":ver");
}

void cache_key_ratelimit(char *out, const char *subject)
{
    build(out, "rl:", subject, "");
}

void cache_key_auth_failure(char *out, const char *client_addr)
{
    build(out, "rla:", client_addr, "");
}

/*
 * The version key keeps the highest sequence seen and only ever grows (until it expires).
 * Its TTL is at least CACHE_VERSION_TTL_SECONDS, far longer than any list key lives, so the
 * version outlives every cached field it protects.
 */
/* clang-format off */
const char cache_lua_invalidate[] =
    "local seq = tonumber(ARGV[1]) or 0\n"
    "local ttl = tonumber(ARGV[2]) or " PROFILE_STR(CACHE_VERSION_TTL_SECONDS) "\n"
    "local keep = redis.call('TTL', KEYS[1])\n"
    "if keep > ttl then ttl = keep end\n"
    "local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0\n"
    "if seq > cur then\n"
    "  redis.call('SET', KEYS[1], string.format('%.0f', seq), 'EX', ttl)\n"
    "elseif keep < ttl then\n"
    "  redis.call('EXPIRE', KEYS[1], ttl)\n"
    "end\n"
    "if #KEYS > 1 then redis.call('DEL', unpack(KEYS, 2)) end\n"
    "return 1\n";
/* clang-format on */

/*
 * Invariant: every field of a list hash was filled at exactly the version the version key
 * holds. A fill at a newer version than stored raises the version and first drops the fields
 * of the older version (a write came in between whose invalidation may not have run yet).
 * The hash's TTL is set only when the hash is created, so no field is older than the TTL.
 */
/* clang-format off */
const char cache_lua_fill[] =
    "local v = tonumber(ARGV[1])\n"
    "local ttl = tonumber(ARGV[4])\n"
    "if v == nil or ttl == nil or ttl <= 0 then return redis.error_reply('bad fill args') end\n"
    "local cur = tonumber(redis.call('GET', KEYS[1]) or '-1') or -1\n"
    "if cur > v then return 0 end\n"
    "local vttl = " PROFILE_STR(CACHE_VERSION_TTL_SECONDS) "\n"
    "if 2 * ttl > vttl then vttl = 2 * ttl end\n"
    "if cur < v then\n"
    "  local keep = redis.call('TTL', KEYS[1])\n"
    "  if keep > vttl then vttl = keep end\n"
    "  redis.call('SET', KEYS[1], string.format('%.0f', v), 'EX', vttl)\n"
    "  if cur >= 0 then redis.call('DEL', KEYS[2]) end\n"
    "elseif redis.call('TTL', KEYS[1]) < vttl then\n"
    "  redis.call('EXPIRE', KEYS[1], vttl)\n"
    "end\n"
    "redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])\n"
    "if redis.call('TTL', KEYS[2]) < 0 then redis.call('EXPIRE', KEYS[2], ttl) end\n"
    "return 1\n";
/* clang-format on */

/*
 * GCRA (generic cell rate algorithm, as in redis-cell): the key holds the theoretical arrival
 * time (TAT) in microseconds. Each request is worth T = window/limit; a request is allowed
 * when TAT + T - window <= now, i.e. at most `limit` requests fit in a burst and then one
 * every T. A denied request does not move the TAT. The key expires when the bucket is full
 * again, so idle callers cost no memory.
 *
 * ARGV[4] (default 1) decides that many requests of the caller at once, in order: the first
 * `allowed` of them pass (each moving the TAT by T), the rest are denied. Several callers go in
 * one call as KEYS[i] with ARGV[4i-3..4i]; the reply holds four numbers per key, in order.
 * Every argument is checked before any key changes.
 */
const char cache_lua_ratelimit[] =
    "local m = #KEYS\n"
    "if m < 1 or #ARGV < 4 * m - 1 then return redis.error_reply('bad ratelimit args') end\n"
    "local out, tats, ttls = {}, {}, {}\n"
    "local clock\n"
    "for i = 1, m do\n"
    "  local b = (i - 1) * 4\n"
    "  local limit, window = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])\n"
    "  local now, n = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4] or '1')\n"
    "  if not limit or limit <= 0 or not window or window <= 0 or not now or not n or n < 1 or\n"
    "     n > 100000 then\n"
    "    return redis.error_reply('bad ratelimit args')\n"
    "  end\n"
    "  window = window * 1000000\n"
    "  if now <= 0 then\n"
    "    if not clock then\n"
    "      local t = redis.call('TIME')\n"
    "      clock = t[1] * 1000000 + t[2]\n"
    "    end\n"
    "    now = clock\n"
    "  end\n"
    "  local T = window / limit\n"
    "  local tat = tonumber(redis.call('GET', KEYS[i])) or 0\n"
    "  if tat < now then tat = now end\n"
    "  local allowed = 0\n"
    "  while allowed < n and now >= tat + T - window do\n"
    "    tat = tat + T\n"
    "    allowed = allowed + 1\n"
    "  end\n"
    "  local retry, remaining = 0, 0\n"
    "  if allowed < n then\n"
    "    retry = math.ceil((tat + T - window - now) / 1000000)\n"
    "    if retry < 1 then retry = 1 end\n"
    "  end\n"
    "  if allowed > 0 then\n"
    "    tats[i] = tat\n"
    "    ttls[i] = math.ceil((tat - now) / 1000) + 1\n"
    "    remaining = math.floor((now + window - tat) / T + 1e-6)\n"
    "    if remaining < 0 then remaining = 0 end\n"
    "  end\n"
    "  out[b + 1], out[b + 2] = allowed, remaining\n"
    "  out[b + 3], out[b + 4] = math.ceil((tat - now) / 1000000), retry\n"
    "end\n"
    "for i = 1, m do\n"
    "  if tats[i] then redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', ttls[i]) "
    "end\n"
    "end\n"
    "return out\n";
