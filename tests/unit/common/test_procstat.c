/*
 * common/procstat: the process_* figures of this very test process, and their exposition.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include "common/procstat.h"

static void test_read_self(void **state)
{
    procstat_t s;
    (void)state;
    procstat_read(&s);
    assert_true(s.have_stat);
    assert_true(s.resident_bytes > 1e5);
    assert_true(s.virtual_bytes >= s.resident_bytes);
    assert_true(s.cpu_seconds >= 0);
    assert_true(s.open_fds >= 3); /* stdin, stdout, stderr */
    assert_true(s.start_time > (double)time(NULL) - 3600 && s.start_time <= (double)time(NULL) + 1);
}

static void test_render(void **state)
{
    strbuf_t b;
    (void)state;
    strbuf_init(&b);
    procstat_render(&b);
    assert_non_null(strstr(b.data, "# TYPE process_cpu_seconds_total counter\n"));
    assert_non_null(strstr(b.data, "# TYPE process_resident_memory_bytes gauge\n"));
    assert_non_null(strstr(b.data, "\nprocess_open_fds "));
    assert_non_null(strstr(b.data, "\nprocess_start_time_seconds "));
    assert_int_equal(b.data[b.len - 1], '\n');
    strbuf_dispose(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_self),
        cmocka_unit_test(test_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
