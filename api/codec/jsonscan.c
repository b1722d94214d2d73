/*
 * The strict JSON scanner every body passes first: RFC 8259 syntax, UTF-8 and escapes, depth,
 * element count, duplicate member names and number range, because json-c accepts some of that
 * silently; only then does json-c build the tree the body rules read.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json.h>
#include "common/alloc.h"
#include "api/codec/utf8.h"
#include "api/codec/jsonscan.h"

#define INT_DIGITS_MAX 18 /* every integer of up to 18 digits fits in int64 */

typedef struct st_keyref_t {
    const char *s;
    size_t len;
} keyref_t;

typedef struct st_scan_t {
    const unsigned char *p;
    size_t len, pos;
    int depth;
    size_t elements;
    char *arena; /* decoded member names; never reallocated, so keyref_t pointers stay valid */
    size_t arena_used;
    keyref_t *keys; /* member names of the objects being scanned, innermost last */
    size_t nkeys, capkeys;
    struct {
        bool is_array;
        size_t index;
        keyref_t key;
    } path[VALIDATE_MAX_DEPTH + 1];
    const char *err; /* static reason on failure */
    keyref_t dup;    /* the duplicate member name, when err is "duplicate" */
    int dup_depth;
} scan_t;

static const char ERR_DUPLICATE[] = "duplicate member";

static int scan_value(scan_t *sc);

static int fail(scan_t *sc, const char *why)
{
    if (sc->err == NULL)
        sc->err = why;
    return -1;
}

static void skip_ws(scan_t *sc)
{
    while (sc->pos < sc->len) {
        unsigned char c = sc->p[sc->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        sc->pos++;
    }
}

static int hex4(const unsigned char *p, uint32_t *out)
{
    uint32_t v = 0;
    int i;

    for (i = 0; i < 4; ++i) {
        unsigned char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* Scans a string at the opening quote. With `key` set, decodes it into the arena.
 * Long (91 lines): one pass over the bytes; escapes and UTF-8 share the cursor and arena. */
static int scan_string(scan_t *sc, keyref_t *key)
{
    unsigned char *dst = NULL;
    size_t n = 0;

    if (key != NULL)
        dst = (unsigned char *)sc->arena + sc->arena_used;
    sc->pos++; /* opening quote */
    for (;;) {
        unsigned char c;
        if (sc->pos >= sc->len)
            return fail(sc, "unterminated string");
        c = sc->p[sc->pos];
        if (c == '"') {
            sc->pos++;
            break;
        }
        if (c < 0x20)
            return fail(sc, "control character in string");
        if (c == '\\') {
            uint32_t cp;
            if (sc->pos + 1 >= sc->len)
                return fail(sc, "unterminated string");
            c = sc->p[sc->pos + 1];
            sc->pos += 2;
            switch (c) {
            case '"':
            case '\\':
            case '/':
                cp = c;
                break;
            case 'b':
                cp = '\b';
                break;
            case 'f':
                cp = '\f';
                break;
            case 'n':
                cp = '\n';
                break;
            case 'r':
                cp = '\r';
                break;
            case 't':
                cp = '\t';
                break;
            case 'u':
                if (sc->len - sc->pos < 4 || hex4(sc->p + sc->pos, &cp) != 0)
                    return fail(sc, "bad \\u escape");
                sc->pos += 4;
                if (cp >= 0xdc00 && cp <= 0xdfff)
                    return fail(sc, "unpaired surrogate escape");
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    uint32_t lo;
                    if (sc->len - sc->pos < 6 || sc->p[sc->pos] != '\\' ||
                        sc->p[sc->pos + 1] != 'u' || hex4(sc->p + sc->pos + 2, &lo) != 0 ||
                        lo < 0xdc00 || lo > 0xdfff)
                        return fail(sc, "unpaired surrogate escape");
                    sc->pos += 6;
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                }
                break;
            default:
                return fail(sc, "bad escape in string");
            }
            if (key != NULL) {
                if (cp == 0)
                    return fail(sc, "NUL in member name");
                n += utf8_encode(cp, dst + n);
            }
        } else {
            uint32_t cp;
            size_t k = c < 0x80 ? 1 : utf8_decode(sc->p + sc->pos, sc->len - sc->pos, &cp);
            if (k == 0)
                return fail(sc, "invalid UTF-8");
            if (key != NULL) {
                memcpy(dst + n, sc->p + sc->pos, k);
                n += k;
            }
            sc->pos += k;
        }
    }
    if (key != NULL) {
        /* Decoded text is never longer than its escaped form, so the arena (sized to the
         * body) cannot overflow. */
        key->s = (const char *)dst;
        key->len = n;
        sc->arena_used += n;
    }
    return 0;
}

static int scan_number(scan_t *sc)
{
    size_t start = sc->pos, int_digits = 0;
    bool is_int = true;

    if (sc->p[sc->pos] == '-')
        sc->pos++;
    if (sc->pos >= sc->len)
        return fail(sc, "bad number");
    if (sc->p[sc->pos] == '0') {
        sc->pos++;
        int_digits = 1;
    } else if (sc->p[sc->pos] >= '1' && sc->p[sc->pos] <= '9') {
        while (sc->pos < sc->len && sc->p[sc->pos] >= '0' && sc->p[sc->pos] <= '9') {
            sc->pos++;
            int_digits++;
        }
    } else {
        return fail(sc, "bad number");
    }
    if (sc->pos < sc->len && sc->p[sc->pos] == '.') {
        size_t f = ++sc->pos;
        is_int = false;
        while (sc->pos < sc->len && sc->p[sc->pos] >= '0' && sc->p[sc->pos] <= '9')
            sc->pos++;
        if (sc->pos == f)
            return fail(sc, "bad number");
    }
    if (sc->pos < sc->len && (sc->p[sc->pos] == 'e' || sc->p[sc->pos] == 'E')) {
        size_t e;
        is_int = false;
        sc->pos++;
        if (sc->pos < sc->len && (sc->p[sc->pos] == '+' || sc->p[sc->pos] == '-'))
            sc->pos++;
        e = sc->pos;
        while (sc->pos < sc->len && sc->p[sc->pos] >= '0' && sc->p[sc->pos] <= '9')
            sc->pos++;
        if (sc->pos == e)
            return fail(sc, "bad number");
    }
    if (is_int) {
        if (int_digits > INT_DIGITS_MAX)
            return fail(sc, "number out of range");
    } else {
        char buf[64];
        size_t n = sc->pos - start;
        double d;
        if (n >= sizeof(buf))
            return fail(sc, "number too long");
        memcpy(buf, sc->p + start, n);
        buf[n] = '\0';
        d = strtod(buf, NULL);
        if (!isfinite(d) || fabs(d) > 9.0e15)
            return fail(sc, "number out of range");
    }
    return 0;
}

static int scan_literal(scan_t *sc, const char *lit)
{
    size_t n = strlen(lit);

    if (sc->len - sc->pos < n || memcmp(sc->p + sc->pos, lit, n) != 0)
        return fail(sc, "unexpected character");
    sc->pos += n;
    return 0;
}

static int cmp_keys(const void *a, const void *b)
{
    const keyref_t *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int r = memcmp(x->s, y->s, n);

    if (r != 0)
        return r;
    return x->len < y->len ? -1 : x->len > y->len;
}

static int check_duplicates(scan_t *sc, size_t first)
{
    size_t n = sc->nkeys - first, i;
    keyref_t *k = sc->keys + first;

    if (n < 2)
        return 0;
    qsort(k, n, sizeof(*k), cmp_keys);
    for (i = 1; i < n; ++i) {
        if (cmp_keys(&k[i - 1], &k[i]) == 0) {
            sc->dup = k[i];
            sc->dup_depth = sc->depth;
            return fail(sc, ERR_DUPLICATE);
        }
    }
    return 0;
}

static int scan_container(scan_t *sc, bool is_array)
{
    size_t first = sc->nkeys, count = 0;
    char close = is_array ? ']' : '}';

    if (++sc->depth > VALIDATE_MAX_DEPTH)
        return fail(sc, "nesting too deep");
    sc->path[sc->depth].is_array = is_array;
    sc->path[sc->depth].index = 0;
    sc->path[sc->depth].key.s = NULL;
    sc->path[sc->depth].key.len = 0;
    sc->pos++;
    skip_ws(sc);
    if (sc->pos < sc->len && sc->p[sc->pos] == close) {
        sc->pos++;
        sc->depth--;
        return 0;
    }
    for (;;) {
        if (!is_array) {
            keyref_t key;
            skip_ws(sc);
            if (sc->pos >= sc->len || sc->p[sc->pos] != '"')
                return fail(sc, "expected member name");
            if (scan_string(sc, &key) != 0)
                return -1;
            if (sc->nkeys == sc->capkeys) {
                sc->capkeys = sc->capkeys ? sc->capkeys * 2 : 32;
                sc->keys = xrealloc(sc->keys, sc->capkeys * sizeof(*sc->keys));
            }
            sc->keys[sc->nkeys++] = key;
            sc->path[sc->depth].key = key;
            skip_ws(sc);
            if (sc->pos >= sc->len || sc->p[sc->pos] != ':')
                return fail(sc, "expected ':'");
            sc->pos++;
        } else {
            sc->path[sc->depth].index = count;
        }
        if (scan_value(sc) != 0)
            return -1;
        ++count;
        skip_ws(sc);
        if (sc->pos >= sc->len)
            return fail(sc, "unexpected end of input");
        if (sc->p[sc->pos] == ',') {
            sc->pos++;
            continue;
        }
        if (sc->p[sc->pos] != close)
            return fail(sc, "expected ',' or end of container");
        sc->pos++;
        break;
    }
    if (!is_array) {
        if (check_duplicates(sc, first) != 0)
            return -1;
        sc->nkeys = first;
    }
    sc->depth--;
    return 0;
}

static int scan_value(scan_t *sc)
{
    skip_ws(sc);
    if (sc->pos >= sc->len)
        return fail(sc, "unexpected end of input");
    if (++sc->elements > VALIDATE_MAX_ELEMENTS)
        return fail(sc, "too many elements");
    switch (sc->p[sc->pos]) {
    case '{':
        return scan_container(sc, false);
    case '[':
        return scan_container(sc, true);
    case '"':
        return scan_string(sc, NULL);
    case 't':
        return scan_literal(sc, "true");
    case 'f':
        return scan_literal(sc, "false");
    case 'n':
        return scan_literal(sc, "null");
    default:
        if (sc->p[sc->pos] == '-' || (sc->p[sc->pos] >= '0' && sc->p[sc->pos] <= '9'))
            return scan_number(sc);
        return fail(sc, "unexpected character");
    }
}

/* Builds "a.b[2].c" for the members enclosing depth `depth`, plus `last` when given. */
static void build_path(const scan_t *sc, int depth, const keyref_t *last, char *out, size_t cap)
{
    size_t n = 0;
    int d;

    out[0] = '\0';
    /* depth 1 is the top-level object: its members are the first path component */
    for (d = 1; d < depth && n < cap; ++d) {
        int w;
        if (sc->path[d].is_array)
            w = snprintf(out + n, cap - n, "[%zu]", sc->path[d].index);
        else
            w = snprintf(out + n, cap - n, "%s%.*s", n ? "." : "", (int)sc->path[d].key.len,
                         sc->path[d].key.s);
        if (w < 0)
            break;
        n += (size_t)w;
    }
    if (last != NULL && n < cap)
        snprintf(out + n, cap - n, "%s%.*s", n ? "." : "", (int)last->len, last->s);
}

/*
 * Validates `body` strictly and parses it with json-c. Returns the top-level object (caller
 * puts it), or NULL with one error in `errs`.
 */
json_object *jsonscan_parse_object(const char *body, size_t len, field_errors_t *errs)
{
    scan_t sc;
    json_tokener *tok = NULL;
    json_object *root = NULL;
    char field[FIELD_ERRORS_NAME_MAX + 1];

    field_errors_init(errs);
    if (len > (size_t)16 * 1024 * 1024) {
        field_errors_add(errs, "", "malformed JSON: body too large");
        return NULL;
    }
    memset(&sc, 0, sizeof(sc));
    sc.p = (const unsigned char *)body;
    sc.len = body != NULL ? len : 0;
    sc.arena = xmalloc(sc.len + 1);
    skip_ws(&sc);
    if (sc.pos >= sc.len) {
        fail(&sc, "empty body");
    } else if (sc.p[sc.pos] != '{') {
        fail(&sc, "body must be a JSON object");
    } else if (scan_value(&sc) == 0) {
        skip_ws(&sc);
        if (sc.pos != sc.len)
            fail(&sc, "trailing data after the object");
    }
    if (sc.err == ERR_DUPLICATE) {
        build_path(&sc, sc.dup_depth, &sc.dup, field, sizeof(field));
        field_errors_add(errs, field, "duplicate member name");
        goto Exit;
    }
    if (sc.err != NULL) {
        field_errors_addf(errs, "", "malformed JSON: %s at offset %zu", sc.err, sc.pos);
        goto Exit;
    }
    tok = json_tokener_new_ex(VALIDATE_MAX_DEPTH + 2);
    if (tok == NULL)
        PROFILE_FATAL("json_tokener_new_ex failed");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    root = json_tokener_parse_ex(tok, body, (int)len);
    if (root == NULL || !json_object_is_type(root, json_type_object)) {
        /* Our scanner accepted it, so this should not happen; still fail closed. */
        json_object_put(root);
        root = NULL;
        field_errors_addf(errs, "", "malformed JSON: %s",
                          json_tokener_error_desc(json_tokener_get_error(tok)));
    }
Exit:
    if (tok != NULL)
        json_tokener_free(tok);
    free(sc.keys);
    free(sc.arena);
    return root;
}
