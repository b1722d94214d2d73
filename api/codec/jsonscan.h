/*
 * The strict JSON scanner every request body passes before json-c builds its tree.
 */
#ifndef PROFILE_API_RESOURCES_JSONSCAN_H
#define PROFILE_API_RESOURCES_JSONSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include "api/codec/field_errors.h"

/** Deepest nesting of objects/arrays accepted in a body (the top-level object is depth 1). */
#define VALIDATE_MAX_DEPTH 32
/** Most JSON values (of any kind, containers included) accepted in one body. */
#define VALIDATE_MAX_ELEMENTS 10000

struct json_object;
/**
 * Parses `len` bytes as one JSON object with the strict rules every body gets (RFC 8259 syntax,
 * valid UTF-8 and escapes, depth <= VALIDATE_MAX_DEPTH, at most VALIDATE_MAX_ELEMENTS values,
 * no duplicate member names, integers of at most 18 digits, finite reals). Returns a json-c
 * object the caller releases with json_object_put(), or NULL with one error in `errs` (which
 * is emptied first, so it may be uninitialised on entry).
 */
struct json_object *jsonscan_parse_object(const char *text, size_t len, field_errors_t *errs);

#endif
