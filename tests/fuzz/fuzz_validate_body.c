/*
 * libFuzzer harness: request body validation. The first byte picks the body type (profile,
 * watchlist, history, rating); the rest is the body. Checks the documented invariants of the
 * results, and that every error renders as valid problem+json.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <json.h>
#include "api/codec/ids.h"
#include "api/http/problem.h"
#include "api/resources/validate.h"
#include "api/codec/jsonscan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_errors(const field_errors_t *e)
{
    strbuf_t b;
    json_object *o;

    if (e->count < 1 || e->count > FIELD_ERRORS_MAX || e->used > sizeof(e->storage))
        abort();
    strbuf_init(&b);
    problem_render(&b, 400, "validation-error", "invalid body", e->items, e->count);
    o = json_tokener_parse(b.data);
    if (o == NULL)
        abort();
    json_object_put(o);
    strbuf_dispose(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    field_errors_t e;
    const char *body;
    size_t len;

    if (size < 1)
        return 0;
    body = (const char *)data + 1;
    len = size - 1;
    switch (data[0] & 3) {
    case 0: {
        profile_input_t p;
        if (validate_profile_body(body, len, &p, &e) == 0) {
            long n = validate_utf8_count(p.display_name, strlen(p.display_name), true);
            if (n < 1 || n > 100 || strlen(p.preferences_json) > VALIDATE_MAX_PREFERENCES)
                abort();
            if (p.avatar_url != NULL && strncasecmp(p.avatar_url, "https://", 8) != 0)
                abort();
            /* the canonical preferences text must itself pass the strict parser */
            json_object *o =
                jsonscan_parse_object(p.preferences_json, strlen(p.preferences_json), &e);
            if (o == NULL)
                abort();
            json_object_put(o);
            validate_profile_input_dispose(&p);
        } else {
            if (p.display_name != NULL || p.preferences_json != NULL)
                abort();
            check_errors(&e);
        }
        break;
    }
    case 1: {
        watchlist_input_t w;
        if (validate_watchlist_body(body, len, &w, &e) == 0) {
            if (!ids_valid(w.video_id, strlen(w.video_id)))
                abort();
        } else {
            check_errors(&e);
        }
        break;
    }
    case 2: {
        history_input_t h;
        if (validate_history_body(body, len, &h, &e) == 0) {
            if (!ids_valid(h.video_id, strlen(h.video_id)) || h.position_seconds < 0 ||
                h.position_seconds > 86400 || h.duration_seconds < -1 ||
                h.duration_seconds > 86400 ||
                (h.duration_seconds >= 0 && h.position_seconds > h.duration_seconds))
                abort();
            if (h.watched_at[0] != '\0' && !validate_rfc3339(h.watched_at, strlen(h.watched_at)))
                abort();
        } else {
            check_errors(&e);
        }
        break;
    }
    default: {
        rating_input_t r;
        if (validate_rating_body(body, len, &r, &e) == 0) {
            if (!ids_valid(r.video_id, strlen(r.video_id)) || r.rating < 1 || r.rating > 5)
                abort();
            validate_rating_input_dispose(&r);
        } else {
            if (r.review != NULL)
                abort();
            check_errors(&e);
        }
        break;
    }
    }
    return 0;
}
