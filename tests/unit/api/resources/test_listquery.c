/* tests/unit/api/resources/test_listquery.c: api/resources/listquery.c, the list query string. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include "api/resources/listquery.h"

static bool has_field(const field_errors_t *e, const char *field)
{
    for (size_t i = 0; i < e->count; ++i) {
        if (strcmp(e->items[i].field, field) == 0)
            return true;
    }
    return false;
}

typedef struct {
    const char *qs;
    unsigned allow;
    int ok;
    const char *field;
    int limit;
} query_case_t;

static const query_case_t query_cases[] = {
    {NULL, 0, 1, NULL, 50},
    {"", 0, 1, NULL, 50},
    {"limit=1", 0, 1, NULL, 1},
    {"limit=100", 0, 1, NULL, 100},
    {"limit=50&foo=bar", 0, 1, NULL, 50},
    {"foo&&limit=7&", 0, 1, NULL, 7},
    {"limit=0", 0, 0, "limit", 0},
    {"limit=101", 0, 0, "limit", 0},
    {"limit=-1", 0, 0, "limit", 0},
    {"limit=+5", 0, 0, "limit", 0},
    {"limit=%2B5", 0, 0, "limit", 0},
    {"limit=05", 0, 0, "limit", 0},
    {"limit=5.0", 0, 0, "limit", 0},
    {"limit=1e1", 0, 0, "limit", 0},
    {"limit=%205", 0, 0, "limit", 0},
    {"limit=", 0, 0, "limit", 0},
    {"limit", 0, 0, "limit", 0},
    {"limit=abc", 0, 0, "limit", 0},
    {"limit=99999999999999999999", 0, 0, "limit", 0},
    {"limit=5&limit=6", 0, 0, "limit", 0},
    {"limit=%35", 0, 1, NULL, 5},
    {"limit=5%00", 0, 0, "limit", 0},
    {"l%69mit=5", 0, 1, NULL, 5},
    {"limit=%zz", 0, 0, "limit", 0},
    {"limit=%5", 0, 0, "limit", 0},
    {"x=%", 0, 0, "x", 0},
    {"%zz=1", 0, 0, "query", 0},
    {"cursor=abc_-DEF0", 0, 1, NULL, 50},
    {"cursor=", 0, 1, NULL, 50},
    {"cursor=ab%2Bc", 0, 0, "cursor", 0},
    {"cursor=a=", 0, 0, "cursor", 0},
    {"view=continue", VALIDATE_Q_VIEW, 1, NULL, 50},
    {"view=continue", 0, 1, NULL, 50}, /* not a parameter of this list: ignored */
    {"view=all", VALIDATE_Q_VIEW, 0, "view", 0},
    {"view=", VALIDATE_Q_VIEW, 0, "view", 0},
    {"view=Continue", VALIDATE_Q_VIEW, 0, "view", 0},
    {"view=continue%00", VALIDATE_Q_VIEW, 0, "view", 0},
    {"videoId=v1", VALIDATE_Q_VIDEO_ID, 1, NULL, 50},
    {"videoId=a%2Fb", VALIDATE_Q_VIDEO_ID, 0, "videoId", 0},
    {"videoId=", VALIDATE_Q_VIDEO_ID, 0, "videoId", 0},
    {"videoId=a+b", VALIDATE_Q_VIDEO_ID, 0, "videoId", 0},
    {"videoId=a b", 0, 1, NULL, 50},
    {"limit=0&view=x&videoId=%", VALIDATE_Q_VIEW | VALIDATE_Q_VIDEO_ID, 0, "view", 0},
    {"cursor=abc&cursor=def", 0, 0, "cursor", 0},
    {"view=continue&view=continue", VALIDATE_Q_VIEW, 0, "view", 0},
    {"videoId=a&videoId=b", VALIDATE_Q_VIDEO_ID, 0, "videoId", 0},
    {"videoId=a&videoId=b", 0, 1, NULL, 50}, /* not a parameter of this list: ignored */
};

static void test_query_cases(void **state)
{
    for (size_t i = 0; i < sizeof(query_cases) / sizeof(query_cases[0]); ++i) {
        const query_case_t *c = &query_cases[i];
        field_errors_t e;
        list_query_t q;
        int rc = validate_list_query(c->qs, c->qs ? strlen(c->qs) : 0, c->allow, &q, &e);
        if ((rc == 0) != (c->ok == 1))
            fail_msg("query \"%s\": rc %d", c->qs ? c->qs : "(null)", rc);
        if (c->ok) {
            assert_int_equal(q.limit, c->limit);
        } else if (c->field != NULL && !has_field(&e, c->field)) {
            fail_msg("query \"%s\": no error on %s", c->qs, c->field);
        }
    }
}

static void test_query_values(void **state)
{
    field_errors_t e;
    list_query_t q;
    const char *qs = "limit=20&cursor=AbC-_9&view=continue&videoId=vid.1";
    assert_int_equal(
        validate_list_query(qs, strlen(qs), VALIDATE_Q_VIEW | VALIDATE_Q_VIDEO_ID, &q, &e), 0);
    assert_int_equal(q.limit, 20);
    assert_string_equal(q.cursor, "AbC-_9");
    assert_true(q.view_continue);
    assert_string_equal(q.video_id, "vid.1");

    char big[VALIDATE_MAX_QUERY + 2];
    memset(big, 'a', sizeof(big));
    assert_int_equal(validate_list_query(big, sizeof(big), 0, &q, &e), -1);

    char cur[200] = "cursor=";
    memset(cur + 7, 'A', 161);
    cur[168] = '\0';
    assert_int_equal(validate_list_query(cur, strlen(cur), 0, &q, &e), -1);
    cur[167] = '\0'; /* 160 characters */
    assert_int_equal(validate_list_query(cur, strlen(cur), 0, &q, &e), 0);
    assert_int_equal(strlen(q.cursor), 160);
}

static void test_messages(void **state)
{
    field_errors_t e;
    list_query_t q;

    /* the messages clients see; the limit is quoted from LIST_LIMIT_MAX */
    assert_int_equal(validate_list_query("limit=0", 7, 0, &q, &e), -1);
    assert_int_equal(e.count, 1);
    assert_string_equal(e.items[0].message, "must be an integer from 1 to 100");
    assert_int_equal(validate_list_query("limit=1&limit=2", 15, 0, &q, &e), -1);
    assert_string_equal(e.items[0].field, "limit");
    assert_string_equal(e.items[0].message, "given more than once");
    /* a failed parse leaves the defaults, not half the query */
    assert_int_equal(q.limit, LIST_LIMIT_DEFAULT);
    assert_string_equal(q.cursor, "");
    /* every bad parameter is reported, in order */
    assert_int_equal(validate_list_query("limit=x&cursor=%3D&view=no", 26, VALIDATE_Q_VIEW, &q, &e),
                     -1);
    assert_int_equal(e.count, 3);
    assert_string_equal(e.items[0].field, "limit");
    assert_string_equal(e.items[1].field, "cursor");
    assert_string_equal(e.items[2].field, "view");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_cases),
        cmocka_unit_test(test_query_values),
        cmocka_unit_test(test_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
