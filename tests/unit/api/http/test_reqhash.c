/* Unit tests for api/http/reqhash.c: the idempotency fingerprint separates method, path and body.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include "api/codec/hex.h"
#include "api/http/reqhash.h"

static void hash(const char *m, const char *p, const char *b, size_t blen, uint8_t *out)
{
    reqhash_compute(m, strlen(m), p, strlen(p), b, blen, out);
}

static void test_known_vector(void **state)
{
    uint8_t h[REQHASH_LEN];
    char hex[2 * REQHASH_LEN + 1];
    /* SHA-256("POST\0/p\0{}"), computed independently with sha256sum */
    hash("POST", "/p", "{}", 2, h);
    hex_encode(h, REQHASH_LEN, hex);
    assert_string_equal(hex, "d60a6f440f55c3237fb09ceafd14058e47740aace3902d0ddb8893a187df06ce");
    /* empty everything = SHA-256("\0\0") */
    reqhash_compute(NULL, 0, NULL, 0, NULL, 0, h);
    hex_encode(h, REQHASH_LEN, hex);
    assert_string_equal(hex, "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7");
}

static void test_separation(void **state)
{
    uint8_t a[REQHASH_LEN], b[REQHASH_LEN];
    hash("POST", "/profiles/u/watchlist", "{\"videoId\":\"v\"}", 15, a);
    hash("POST", "/profiles/u/watchlist", "{\"videoId\":\"v\"}", 15, b);
    assert_memory_equal(a, b, REQHASH_LEN);
    hash("PUT", "/profiles/u/watchlist", "{\"videoId\":\"v\"}", 15, b);
    assert_memory_not_equal(a, b, REQHASH_LEN);
    hash("POST", "/profiles/x/watchlist", "{\"videoId\":\"v\"}", 15, b);
    assert_memory_not_equal(a, b, REQHASH_LEN);
    hash("POST", "/profiles/u/watchlist", "{\"videoId\":\"w\"}", 15, b);
    assert_memory_not_equal(a, b, REQHASH_LEN);
    hash("POST", "/profiles/u/watchlist", "{\"videoId\": \"v\"}", 16, b);
    assert_memory_not_equal(a, b, REQHASH_LEN);
    /* the NUL separators keep boundaries apart: ("PO","ST/p") != ("POST","/p") */
    hash("PO", "ST/p", "", 0, a);
    hash("POST", "/p", "", 0, b);
    assert_memory_not_equal(a, b, REQHASH_LEN);
    hash("POST", "/p", "x", 1, a);
    hash("POST", "/px", "", 0, b);
    assert_memory_not_equal(a, b, REQHASH_LEN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_vector),
        cmocka_unit_test(test_separation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
