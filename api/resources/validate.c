/*
 * The body rules: field errors, small predicates (UTF-8, RFC 3339) and the members of each
 * resource's body, read from the tree api/codec/jsonscan.c admits.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <json.h>
#include "common/stringify.h"
#include "api/codec/ids.h"
#include "api/codec/utf8.h"
#include "api/resources/validate.h"
#include "api/codec/jsonscan.h"

#define REVIEW_MAX 2000
#define DISPLAY_NAME_MAX 100
#define AVATAR_URL_MAX 2048
/* messages that quote a limit take it from the constant */
#define DISPLAY_NAME_MSG                                                                           \
    "must be 1 to " PROFILE_STR(DISPLAY_NAME_MAX) " characters without control characters"
#define AVATAR_URL_MSG                                                                             \
    "must be null or an https:// URL of at most " PROFILE_STR(AVATAR_URL_MAX) " bytes"
#define PREFERENCES_MSG "must be at most " PROFILE_STR(VALIDATE_MAX_PREFERENCES) " bytes as JSON"
#define REVIEW_MSG                                                                                 \
    "must be at most " PROFILE_STR(                                                                \
        REVIEW_MAX) " characters without control characters other than line "                      \
                    "breaks and tabs"
#define SECONDS_MAX 86400

/* ---------------------------------------------------------------- small predicates */

static bool is_control(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
}

/* Counts code points; -1 on invalid UTF-8 or a control character not allowed by `allow`. */
static long utf8_count(const char *s, size_t len, bool reject_controls, bool allow_text_ws)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    long n = 0;

    while (i < len) {
        uint32_t cp;
        size_t k = utf8_decode(p + i, len - i, &cp);
        if (k == 0)
            return -1;
        if (reject_controls && is_control(cp) &&
            !(allow_text_ws && (cp == '\n' || cp == '\t' || cp == '\r')))
            return -1;
        i += k;
        ++n;
    }
    return n;
}

long validate_utf8_count(const char *s, size_t len, bool reject_controls)
{
    if (s == NULL)
        return len == 0 ? 0 : -1;
    return utf8_count(s, len, reject_controls, false);
}

/* ---------------------------------------------------------------- RFC 3339 */

static int digits(const char *s, size_t n)
{
    int v = 0;
    size_t i;

    for (i = 0; i < n; ++i) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

    return m == 2 && leap ? 29 : days[m - 1];
}

bool validate_rfc3339(const char *s, size_t len)
{
    int y, mo, d, h, mi, se;
    size_t i;

    if (s == NULL || len < 20 || len > 39)
        return false;
    if (s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' ||
        s[16] != ':')
        return false;
    y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
    h = digits(s + 11, 2), mi = digits(s + 14, 2), se = digits(s + 17, 2);
    if (y < 1900 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h < 0 || h > 23 ||
        mi < 0 || mi > 59 || se < 0 || se > 59)
        return false;
    i = 19;
    if (s[i] == '.') {
        size_t start = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            ++i;
        if (i == start || i - start > 9)
            return false;
    }
    if (i == len)
        return false;
    if (s[i] == 'Z' || s[i] == 'z')
        return i + 1 == len;
    if ((s[i] != '+' && s[i] != '-') || len - i != 6 || s[i + 3] != ':')
        return false;
    {
        int oh = digits(s + i + 1, 2), om = digits(s + i + 4, 2);
        if (oh < 0 || oh > 23 || om < 0 || om > 59)
            return false;
        /* The last evening of 9999 west of UTC is year 10000 in UTC, which RFC 3339 (and the
         * event's UTC timestamps) cannot write: refused like any year past 9999. */
        if (s[i] == '-' && y == 9999 && mo == 12 && d == 31 && h * 60 + mi + oh * 60 + om >= 1440)
            return false;
    }
    return true;
}

/* ---------------------------------------------------------------- field checks */

typedef struct st_field_spec_t {
    const char *name;
    bool ignored; /* accepted and not read (profile PUT echoes of GET output) */
} field_spec_t;

/* Reports every member of `obj` not named in `spec`. Returns the number reported. */
static int check_unknown(json_object *obj, const field_spec_t *spec, size_t nspec,
                         field_errors_t *errs)
{
    int bad = 0;

    json_object_object_foreach(obj, key, val)
    {
        size_t i;
        (void)val;
        for (i = 0; i < nspec; ++i) {
            if (strcmp(key, spec[i].name) == 0)
                break;
        }
        if (i == nspec) {
            field_errors_add(errs, key, "unknown member");
            ++bad;
        }
    }
    return bad;
}

static bool get_member(json_object *obj, const char *name, json_object **out)
{
    *out = NULL;
    return json_object_object_get_ex(obj, name, out);
}

/* Reads a required-or-optional integer in [min, max]. Returns 1 found, 0 absent, -1 bad. */
static int get_int(json_object *obj, const char *name, bool required, bool null_is_absent,
                   int64_t min, int64_t max, int64_t *out, field_errors_t *errs)
{
    json_object *v;
    int64_t n;

    if (!get_member(obj, name, &v) || (null_is_absent && v == NULL)) {
        if (required) {
            field_errors_add(errs, name, "is required");
            return -1;
        }
        return 0;
    }
    if (!json_object_is_type(v, json_type_int)) {
        field_errors_add(errs, name, "must be an integer");
        return -1;
    }
    errno = 0;
    n = json_object_get_int64(v);
    if (errno != 0 || n < min || n > max) {
        field_errors_addf(errs, name, "must be an integer from %lld to %lld", (long long)min,
                          (long long)max);
        return -1;
    }
    *out = n;
    return 1;
}

static int get_video_id(json_object *obj, char *out, field_errors_t *errs)
{
    json_object *v;
    const char *s;
    size_t len;

    if (!get_member(obj, "videoId", &v)) {
        field_errors_add(errs, "videoId", "is required");
        return -1;
    }
    if (!json_object_is_type(v, json_type_string)) {
        field_errors_add(errs, "videoId", "must be a string");
        return -1;
    }
    s = json_object_get_string(v);
    len = (size_t)json_object_get_string_len(v);
    if (!ids_valid(s, len)) {
        field_errors_add(errs, "videoId", "must match ^[A-Za-z0-9._-]{1,64}$");
        return -1;
    }
    memcpy(out, s, len);
    out[len] = '\0';
    return 0;
}

static bool url_host_ok(const char *h, size_t len)
{
    size_t i, port_at = len;

    if (len == 0)
        return false;
    if (h[0] == '[') { /* IPv6 literal */
        for (i = 1; i < len && h[i] != ']'; ++i) {
            if (!(h[i] == ':' || h[i] == '.' || (h[i] >= '0' && h[i] <= '9') ||
                  (h[i] >= 'a' && h[i] <= 'f') || (h[i] >= 'A' && h[i] <= 'F')))
                return false;
        }
        if (i == len || i == 1)
            return false;
        port_at = i + 1;
        if (port_at < len && h[port_at] != ':')
            return false;
    } else {
        for (i = 0; i < len && h[i] != ':'; ++i) {
            char c = h[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-'))
                return false;
        }
        if (i == 0 || h[0] == '.' || h[0] == '-')
            return false;
        port_at = i;
    }
    if (port_at < len) { /* ":port", 1-5 digits */
        size_t nd = len - port_at - 1;
        if (nd < 1 || nd > 5)
            return false;
        for (i = port_at + 1; i < len; ++i) {
            if (h[i] < '0' || h[i] > '9')
                return false;
        }
        if (atoi(h + port_at + 1) > 65535)
            return false;
    }
    return true;
}

/* https://host[:port][/path][?query][#fragment], printable ASCII without space, ", <, >, \, ^,
 * `, {, |, } (RFC 3986 characters and '%'); no user info. */
static bool avatar_url_ok(const char *s, size_t len)
{
    static const char scheme[] = "https://";
    size_t i, host_end;

    if (len > AVATAR_URL_MAX || len <= sizeof(scheme) - 1 ||
        strncasecmp(s, scheme, sizeof(scheme) - 1) != 0)
        return false;
    for (i = 0; i < len; ++i) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || strchr("\"<>\\^`{|}", c) != NULL)
            return false;
    }
    i = sizeof(scheme) - 1;
    for (host_end = i; host_end < len; ++host_end) {
        if (s[host_end] == '/' || s[host_end] == '?' || s[host_end] == '#')
            break;
        if (s[host_end] == '@')
            return false;
    }
    return url_host_ok(s + i, host_end - i);
}

static bool lang_tag_ok(const char *s, size_t len)
{
    size_t i;

    if (len < 2 || len > 35 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
        return false;
    for (i = 0; i < len; ++i) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

static bool short_text_ok(json_object *v, long max)
{
    long n =
        utf8_count(json_object_get_string(v), (size_t)json_object_get_string_len(v), true, false);
    return n >= 1 && n <= max;
}

/* True when a string anywhere inside `v` holds a NUL character (PostgreSQL's jsonb cannot
 * store one, so it must be a 400 here, not a database error). Depth is bounded by the scanner. */
static bool contains_nul_string(json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_string:
        return strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v);
    case json_type_array:
        for (size_t i = 0; i < json_object_array_length(v); ++i)
            if (contains_nul_string(json_object_array_get_idx(v, i)))
                return true;
        return false;
    case json_type_object: {
        json_object_object_foreach(v, key, child)
        {
            (void)key;
            if (contains_nul_string(child))
                return true;
        }
        return false;
    }
    default:
        return false;
    }
}

/* Type checks of the well-known preference members; other members are free-form. */
static int check_preferences(json_object *prefs, field_errors_t *errs)
{
    int bad = 0;
    json_object *v;

    if (contains_nul_string(prefs)) {
        field_errors_add(errs, "preferences", "must not contain NUL characters");
        ++bad;
    }

    if (get_member(prefs, "language", &v) &&
        !(json_object_is_type(v, json_type_string) &&
          lang_tag_ok(json_object_get_string(v), (size_t)json_object_get_string_len(v)))) {
        field_errors_add(errs, "preferences.language",
                         "must be a language tag such as \"en\" or \"pt-BR\"");
        ++bad;
    }
    if (get_member(prefs, "autoplay", &v) && !json_object_is_type(v, json_type_boolean)) {
        field_errors_add(errs, "preferences.autoplay", "must be a boolean");
        ++bad;
    }
    if (get_member(prefs, "subtitles", &v) && v != NULL &&
        !json_object_is_type(v, json_type_boolean) &&
        !(json_object_is_type(v, json_type_string) && short_text_ok(v, 35))) {
        field_errors_add(errs, "preferences.subtitles",
                         "must be a boolean, null or a short string");
        ++bad;
    }
    if (get_member(prefs, "maturityRating", &v) &&
        !(json_object_is_type(v, json_type_string) && short_text_ok(v, 32)) &&
        !json_object_is_type(v, json_type_int)) {
        field_errors_add(errs, "preferences.maturityRating",
                         "must be a short string or an integer");
        ++bad;
    }
    return bad;
}

/* ---------------------------------------------------------------- bodies */

#define NSPEC(spec) (sizeof(spec) / sizeof((spec)[0]))

/* Every body's start: empties `errs`, scans and parses the body, and counts unknown members
 * into *bad. Returns the tree (the caller puts it), or NULL when the body is not a JSON object. */
static json_object *open_body(const char *body, size_t len, const field_spec_t *spec, size_t nspec,
                              field_errors_t *errs, int *bad)
{
    json_object *root;

    field_errors_init(errs);
    if ((root = jsonscan_parse_object(body, len, errs)) == NULL)
        return NULL;
    *bad = check_unknown(root, spec, nspec, errs);
    return root;
}

/* An optional string member: 1 and its bytes when it is a string, 0 when absent or null, -1
 * (with an error) when it is something else. */
static int get_optional_string(json_object *obj, const char *name, const char **s, size_t *len,
                               field_errors_t *errs)
{
    json_object *v;

    if (!get_member(obj, name, &v) || v == NULL)
        return 0;
    if (!json_object_is_type(v, json_type_string)) {
        field_errors_add(errs, name, "must be null or a string");
        return -1;
    }
    *s = json_object_get_string(v);
    *len = (size_t)json_object_get_string_len(v);
    return 1;
}

void validate_profile_input_dispose(profile_input_t *p)
{
    if (p == NULL)
        return;
    free(p->display_name);
    free(p->avatar_url);
    free(p->preferences_json);
    p->display_name = p->avatar_url = p->preferences_json = NULL;
}

int validate_profile_body(const char *body, size_t len, profile_input_t *out, field_errors_t *errs)
{
    static const field_spec_t spec[] = {
        {"displayName", false}, {"avatarUrl", false}, {"preferences", false}, {"userId", true},
        {"version", true},      {"createdAt", true},  {"updatedAt", true},
    };
    json_object *root, *v;
    const char *dn = NULL, *url = NULL, *prefs_text = "{}";
    size_t dn_len = 0, url_len = 0, prefs_len = 2;
    int bad;

    memset(out, 0, sizeof(*out));
    if ((root = open_body(body, len, spec, NSPEC(spec), errs, &bad)) == NULL)
        return -1;

    if (!get_member(root, "displayName", &v)) {
        field_errors_add(errs, "displayName", "is required");
        ++bad;
    } else if (!json_object_is_type(v, json_type_string)) {
        field_errors_add(errs, "displayName", "must be a string");
        ++bad;
    } else {
        long n;
        dn = json_object_get_string(v);
        dn_len = (size_t)json_object_get_string_len(v);
        n = utf8_count(dn, dn_len, true, false);
        if (n < 1 || n > DISPLAY_NAME_MAX) {
            field_errors_add(errs, "displayName", DISPLAY_NAME_MSG);
            ++bad;
        }
    }

    switch (get_optional_string(root, "avatarUrl", &url, &url_len, errs)) {
    case -1:
        ++bad;
        break;
    case 1:
        if (!avatar_url_ok(url, url_len)) {
            field_errors_add(errs, "avatarUrl", AVATAR_URL_MSG);
            ++bad;
        }
        break;
    }

    if (get_member(root, "preferences", &v)) {
        if (!json_object_is_type(v, json_type_object)) {
            field_errors_add(errs, "preferences", "must be an object");
            ++bad;
        } else {
            bad += check_preferences(v, errs);
            prefs_text = json_object_to_json_string_length(
                v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &prefs_len);
            if (prefs_text == NULL) {
                PROFILE_FATAL("json_object_to_json_string_length failed");
            } else if (prefs_len > VALIDATE_MAX_PREFERENCES) {
                field_errors_add(errs, "preferences", PREFERENCES_MSG);
                ++bad;
            }
        }
    }

    if (bad == 0) {
        out->display_name = xstrndup(dn, dn_len);
        out->avatar_url = url != NULL ? xstrndup(url, url_len) : NULL;
        out->preferences_json = xstrndup(prefs_text, prefs_len);
    }
    json_object_put(root);
    return bad == 0 ? 0 : -1;
}

int validate_watchlist_body(const char *body, size_t len, watchlist_input_t *out,
                            field_errors_t *errs)
{
    static const field_spec_t spec[] = {{"videoId", false}};
    json_object *root;
    int bad;

    memset(out, 0, sizeof(*out));
    if ((root = open_body(body, len, spec, 1, errs, &bad)) == NULL)
        return -1;
    if (get_video_id(root, out->video_id, errs) != 0)
        ++bad;
    json_object_put(root);
    if (bad != 0)
        memset(out, 0, sizeof(*out));
    return bad == 0 ? 0 : -1;
}

int validate_history_body(const char *body, size_t len, history_input_t *out, field_errors_t *errs)
{
    static const field_spec_t spec[] = {
        {"videoId", false},
        {"positionSeconds", false},
        {"durationSeconds", false},
        {"watchedAt", false},
    };
    json_object *root, *v;
    int64_t pos = -1, dur = -1;
    int bad, got_pos, got_dur;

    memset(out, 0, sizeof(*out));
    if ((root = open_body(body, len, spec, NSPEC(spec), errs, &bad)) == NULL)
        return -1;
    if (get_video_id(root, out->video_id, errs) != 0)
        ++bad;
    got_pos = get_int(root, "positionSeconds", true, false, 0, SECONDS_MAX, &pos, errs);
    got_dur = get_int(root, "durationSeconds", false, true, 0, SECONDS_MAX, &dur, errs);
    if (got_pos < 0)
        ++bad;
    if (got_dur < 0)
        ++bad;
    if (got_pos > 0 && got_dur > 0 && pos > dur) {
        field_errors_add(errs, "positionSeconds", "must not exceed durationSeconds");
        ++bad;
    }
    out->watched_at[0] = '\0';
    if (get_member(root, "watchedAt", &v) && v != NULL) {
        const char *s;
        size_t n;
        if (!json_object_is_type(v, json_type_string)) {
            field_errors_add(errs, "watchedAt", "must be an RFC 3339 date-time string");
            ++bad;
        } else {
            s = json_object_get_string(v);
            n = (size_t)json_object_get_string_len(v);
            if (n >= sizeof(out->watched_at) || !validate_rfc3339(s, n)) {
                field_errors_add(errs, "watchedAt",
                                 "must be an RFC 3339 date-time with a time zone");
                ++bad;
            } else {
                memcpy(out->watched_at, s, n);
                out->watched_at[n] = '\0';
            }
        }
    }
    out->position_seconds = (int)pos;
    out->duration_seconds = got_dur > 0 ? (int)dur : -1;
    json_object_put(root);
    if (bad != 0)
        memset(out, 0, sizeof(*out));
    return bad == 0 ? 0 : -1;
}

void validate_rating_input_dispose(rating_input_t *r)
{
    if (r == NULL)
        return;
    free(r->review);
    r->review = NULL;
}

int validate_rating_body(const char *body, size_t len, rating_input_t *out, field_errors_t *errs)
{
    static const field_spec_t spec[] = {{"videoId", false}, {"rating", false}, {"review", false}};
    json_object *root;
    int64_t rating = 0;
    const char *review = NULL;
    size_t review_len = 0;
    int bad;

    memset(out, 0, sizeof(*out));
    if ((root = open_body(body, len, spec, NSPEC(spec), errs, &bad)) == NULL)
        return -1;
    if (get_video_id(root, out->video_id, errs) != 0)
        ++bad;
    if (get_int(root, "rating", true, false, 1, 5, &rating, errs) < 0)
        ++bad;
    switch (get_optional_string(root, "review", &review, &review_len, errs)) {
    case -1:
        ++bad;
        break;
    case 1: {
        /* Line breaks and tabs are fine in a review; other control characters are not. */
        long n = utf8_count(review, review_len, true, true);
        if (n < 0 || n > REVIEW_MAX) {
            field_errors_add(errs, "review", REVIEW_MSG);
            ++bad;
        }
        break;
    }
    }
    if (bad == 0) {
        out->rating = (int)rating;
        out->review = review != NULL ? xstrndup(review, review_len) : NULL;
    } else {
        memset(out, 0, sizeof(*out));
    }
    json_object_put(root);
    return bad == 0 ? 0 : -1;
}
