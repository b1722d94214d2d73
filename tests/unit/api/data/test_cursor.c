/* Unit tests for api/data/cursor.c: round trips, tampering, truncation, kind confusion, bounds. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include "api/codec/b64url.h"
#include "api/data/cursor.h"

static void test_round_trip(void **state)
{
    static const struct {
        char kind;
        int64_t ts;
        const char *id;
    } cases[] = {
        {'w', 1700000000123456LL, "video-1"},
        {'h', 0, "0b9d6a3c-2f43-4d1e-9a59-5d0b6c7e8f90"},
        {'c', 253402300799999999LL, "a"},
        {'r', -62135596800000000LL, "A.b_c-D"},
        {'w', 1, "0123456789012345678901234567890123456789012345678901234567890123"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
        cursor_t c, d;
        char enc[CURSOR_MAX_ENCODED];
        memset(&c, 0, sizeof(c));
        c.kind = cases[i].kind;
        c.ts_us = cases[i].ts;
        snprintf(c.id, sizeof(c.id), "%s", cases[i].id);
        cursor_encode(&c, enc);
        assert_true(strlen(enc) < CURSOR_MAX_ENCODED);
        for (const char *p = enc; *p; ++p)
            assert_non_null(
                strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", *p));
        assert_int_equal(cursor_decode(enc, strlen(enc), cases[i].kind, &d), 0);
        assert_int_equal(d.kind, c.kind);
        assert_true(d.ts_us == c.ts_us);
        assert_string_equal(d.id, c.id);
        /* another list's cursor is refused */
        for (const char *k = "whcr"; *k; ++k) {
            if (*k != cases[i].kind)
                assert_int_equal(cursor_decode(enc, strlen(enc), *k, &d), -1);
        }
    }
}

static void test_tampering(void **state)
{
    cursor_t c, d;
    char enc[CURSOR_MAX_ENCODED], buf[CURSOR_MAX_ENCODED + 8];
    memset(&c, 0, sizeof(c));
    c.kind = 'h';
    c.ts_us = 1700000000000000LL;
    strcpy(c.id, "entry-42");
    cursor_encode(&c, enc);
    size_t len = strlen(enc);

    /* every single-character change is detected */
    for (size_t i = 0; i < len; ++i) {
        strcpy(buf, enc);
        buf[i] = buf[i] == 'A' ? 'B' : 'A';
        assert_int_equal(cursor_decode(buf, len, 'h', &d), -1);
    }
    /* every truncation and an extension */
    for (size_t n = 0; n < len; ++n)
        assert_int_equal(cursor_decode(enc, n, 'h', &d), -1);
    snprintf(buf, sizeof(buf), "%sAA", enc);
    assert_int_equal(cursor_decode(buf, strlen(buf), 'h', &d), -1);
    /* padding, other alphabets, garbage */
    snprintf(buf, sizeof(buf), "%s=", enc);
    assert_int_equal(cursor_decode(buf, strlen(buf), 'h', &d), -1);
    assert_int_equal(cursor_decode("+/+/", 4, 'h', &d), -1);
    assert_int_equal(cursor_decode("", 0, 'h', &d), -1);
    assert_int_equal(cursor_decode(NULL, 0, 'h', &d), -1);
    assert_int_equal(cursor_decode("null", 4, 'h', &d), -1);
    char big[400];
    memset(big, 'A', sizeof(big));
    assert_int_equal(cursor_decode(big, sizeof(big), 'h', &d), -1);
}

static void test_forged_fields(void **state)
{
    /* A structurally valid payload with a wrong check value, and an invalid id */
    unsigned char raw[100];
    char enc[200];
    cursor_t d, c;
    memset(raw, 0, sizeof(raw));
    raw[0] = 1;
    raw[1] = 'w';
    raw[10] = 3;
    memcpy(raw + 11, "a/b", 3);
    b64url_encode(raw, 11 + 3 + 8, enc);
    assert_int_equal(cursor_decode(enc, strlen(enc), 'w', &d), -1);

    /* ids outside the pattern are refused even when correctly encoded */
    memset(&c, 0, sizeof(c));
    c.kind = 'w';
    c.ts_us = 5;
    strcpy(c.id, "a/b");
    cursor_encode(&c, enc);
    assert_int_equal(cursor_decode(enc, strlen(enc), 'w', &d), -1);
    c.id[0] = '\0';
    cursor_encode(&c, enc);
    assert_int_equal(cursor_decode(enc, strlen(enc), 'w', &d), -1);
    /* out-of-range timestamps and unknown kinds */
    strcpy(c.id, "ok");
    c.ts_us = INT64_MAX;
    cursor_encode(&c, enc);
    assert_int_equal(cursor_decode(enc, strlen(enc), 'w', &d), -1);
    c.ts_us = 1;
    c.kind = 'x';
    cursor_encode(&c, enc);
    assert_int_equal(cursor_decode(enc, strlen(enc), 'x', &d), -1);
}

static void test_b64url(void **state)
{
    static const struct {
        const char *raw, *enc;
    } v[] = {{"", ""},           {"f", "Zg"},          {"fo", "Zm8"},          {"foo", "Zm9v"},
             {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}, {"\xfb\xff", "-_8"}};
    unsigned char out[16];
    char enc[16];
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); ++i) {
        size_t n = strlen(v[i].raw);
        assert_int_equal(b64url_encode((const unsigned char *)v[i].raw, n, enc), strlen(v[i].enc));
        assert_string_equal(enc, v[i].enc);
        assert_int_equal(b64url_decode(v[i].enc, strlen(v[i].enc), out, sizeof(out)), (long)n);
        assert_memory_equal(out, v[i].raw, n);
    }
    assert_int_equal(b64url_decode("Zh", 2, out, sizeof(out)), -1);   /* non-canonical bits */
    assert_int_equal(b64url_decode("Zm9", 3, out, sizeof(out)), -1);  /* non-canonical bits */
    assert_int_equal(b64url_decode("Z", 1, out, sizeof(out)), -1);    /* 4k+1 */
    assert_int_equal(b64url_decode("Zm9v", 4, out, 2), -1);           /* no room */
    assert_int_equal(b64url_decode("Zm 9", 4, out, sizeof(out)), -1); /* space */
    assert_int_equal(b64url_decode("Zg==", 4, out, sizeof(out)), -1); /* padding */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_tampering),
        cmocka_unit_test(test_forged_fields),
        cmocka_unit_test(test_b64url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
