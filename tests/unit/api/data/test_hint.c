/*
 * Tests api/data/hint.c on a real h2o loop with a fake sender: partitions marked in one loop
 * iteration go out as one hint, at most one hint is in flight, marks made meanwhile go out
 * together when it completes, a dropped hint is not retried, out-of-range partitions wake all.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <h2o.h>

#include "api/data/hint.h"

static struct {
    int calls;
    char last[256];
    int result; /* what the sender returns */
} fake;

static int fake_send(hint_t *h, void *ctx, const char *partitions)
{
    (void)h;
    (void)ctx;
    fake.calls++;
    snprintf(fake.last, sizeof(fake.last), "%s", partitions);
    return fake.result;
}

static h2o_loop_t *loop;
static hint_t *hint;

static int setup(void **state)
{
    (void)state;
    memset(&fake, 0, sizeof(fake));
    loop = h2o_evloop_create();
    hint = hint_create(loop, fake_send, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    hint_destroy(hint);
    h2o_evloop_run(loop, 0);
    h2o_evloop_destroy(loop);
    return 0;
}

/* One loop iteration: the zero timeout fires at its end. */
static void iterate(void)
{
    h2o_evloop_run(loop, 0);
}

static void test_marks_of_one_iteration_coalesce(void **state)
{
    (void)state;
    hint_mark(hint, 7);
    hint_mark(hint, 3);
    hint_mark(hint, 7);
    hint_mark(hint, 63);
    hint_mark(hint, 0);
    assert_int_equal(fake.calls, 0); /* nothing is sent inside the iteration that marks */
    iterate();
    assert_int_equal(fake.calls, 1);
    assert_string_equal(fake.last, "{0,3,7,63}");
    iterate();
    assert_int_equal(fake.calls, 1); /* nothing new: nothing sent */
    assert_int_equal(hint_sent_count(hint), 1);
}

static void test_one_in_flight_then_the_rest_together(void **state)
{
    (void)state;
    hint_mark(hint, 1);
    iterate();
    assert_int_equal(fake.calls, 1);
    assert_string_equal(fake.last, "{1}");
    /* commits while the first hint is in flight wait for it, then go out as one */
    hint_mark(hint, 2);
    iterate();
    hint_mark(hint, 5);
    hint_mark(hint, 2);
    iterate();
    assert_int_equal(fake.calls, 1);
    hint_sent(hint);
    iterate();
    assert_int_equal(fake.calls, 2);
    assert_string_equal(fake.last, "{2,5}");
    hint_sent(hint);
    iterate();
    assert_int_equal(fake.calls, 2);
}

static void test_dropped_hint_is_not_retried(void **state)
{
    (void)state;
    fake.result = -1; /* e.g. the hint connection is down */
    hint_mark(hint, 9);
    iterate();
    assert_int_equal(fake.calls, 1);
    iterate();
    assert_int_equal(fake.calls, 1); /* the relay's poll covers a lost hint */
    fake.result = 0;
    hint_mark(hint, 10); /* not blocked by the dropped one */
    iterate();
    assert_int_equal(fake.calls, 2);
    assert_string_equal(fake.last, "{10}");
}

static void test_out_of_range_wakes_every_partition(void **state)
{
    (void)state;
    char all[256];
    size_t n = 0;
    hint_mark(hint, -1);
    iterate();
    assert_int_equal(fake.calls, 1);
    n += (size_t)snprintf(all + n, sizeof(all) - n, "{");
    for (int p = 0; p < HINT_PARTITIONS; p++)
        n += (size_t)snprintf(all + n, sizeof(all) - n, p > 0 ? ",%d" : "%d", p);
    snprintf(all + n, sizeof(all) - n, "}");
    assert_string_equal(fake.last, all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_marks_of_one_iteration_coalesce, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_in_flight_then_the_rest_together, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dropped_hint_is_not_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_range_wakes_every_partition, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
