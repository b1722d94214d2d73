/*
 * RFC 9457 problem+json bodies. Every error the API sends is built here, so no path can leak
 * SQL text, stack traces or raw input unescaped.
 */
#ifndef PROFILE_API_HTTP_PROBLEM_H
#define PROFILE_API_HTTP_PROBLEM_H

#include <stddef.h>
#include "common/buf.h"
#include "api/codec/field_errors.h"

#define PROBLEM_CONTENT_TYPE "application/problem+json"

/**
 * Appends a problem object to `out`:
 * {"type":"/problems/<slug>","title":<title for status>,"status":N,"detail":<detail>
 *  [,"errors":[{"field","message"},...]]}.
 * `slug` is a short kebab-case name (e.g. "validation-error"); `detail` may be NULL (omitted)
 * and is JSON-escaped; `errors` may be NULL when `nerrors` is 0.
 */
void problem_render(strbuf_t *out, int status, const char *slug, const char *detail,
                    const field_error_t *errors, size_t nerrors);

/** The reason phrase used as the title for `status` ("Not Found"); "Error" when unknown. */
const char *problem_title(int status);

/**
 * Appends `s` (`len` bytes, may hold anything: raw client input included) as a quoted JSON
 * string: quotes, backslashes, C0/DEL/C1 controls, `<`, `>`, `&`, U+2028/U+2029 are escaped and
 * every invalid UTF-8 sequence becomes U+FFFD, so the output is always valid JSON and UTF-8.
 * `s` may be NULL when `len` is 0.
 */
void problem_append_json_text(strbuf_t *out, const char *s, size_t len);

#endif
