/* test-notify.c: the readiness protocol against a real datagram socket standing in for systemd. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check-helpers.h"
#include "check-main.h"
#include "harness.h"
#include "notify.h"

/* Receive one datagram within a second and check it is exactly want. */
static void
manager_expect(struct manager *m, const char *want)
{
    char buf[8192];
    ssize_t n = manager_recv_or_fail(m, buf, sizeof(buf), NULL, 1000);

    ck_assert_msg(n >= 0, "no '%s' within 1 s", want);
    ck_assert_int_eq((size_t)n, strlen(buf));
    ck_assert_str_eq(buf, want);
}

/* Every message the daemon sends, byte for byte, to a manager at m. */
static void
check_messages(struct manager *m)
{
    struct notify *n = notify_new();
    char buf[256], *end;
    uint64_t before, after, stamp;
    ssize_t len;

    ck_assert_ptr_nonnull(n);
    ck_assert_int_eq(notify_ready(n, NULL), 0);
    manager_expect(m, "READY=1");
    ck_assert_int_eq(notify_ready(n, "serving 3 listeners"), 0);
    manager_expect(m, "READY=1\nSTATUS=serving 3 listeners");
    ck_assert_int_eq(notify_stopping(n), 0);
    manager_expect(m, "STOPPING=1");
    ck_assert_int_eq(notify_watchdog(n), 0);
    manager_expect(m, "WATCHDOG=1");
    ck_assert_int_eq(notify_status(n, "%d connections, %s", 42, "0 errors"), 0);
    manager_expect(m, "STATUS=42 connections, 0 errors");
    ck_assert_int_eq(notify_send(n, "EXTEND_TIMEOUT_USEC=%u", 5000000u), 0);
    manager_expect(m, "EXTEND_TIMEOUT_USEC=5000000");

    before = now_usec();
    ck_assert_int_eq(notify_reloading(n), 0);
    after = now_usec();
    len = manager_recv_or_fail(m, buf, sizeof(buf), NULL, 1000);
    ck_assert_int_gt(len, 0);
    ck_assert_msg(strncmp(buf, "RELOADING=1\nMONOTONIC_USEC=", 27) == 0, "got '%s'", buf);
    ck_assert(buf[27] >= '1' && buf[27] <= '9');
    stamp = strtoull(buf + 27, &end, 10);
    ck_assert_int_eq(*end, '\0');
    ck_assert_uint_ge(stamp, before);
    ck_assert_uint_le(stamp, after);

    notify_free(n);
}

START_TEST(test_unset_is_noop)
{
    struct notify *n;

    unsetenv("NOTIFY_SOCKET");
    n = notify_new();
    ck_assert_ptr_null(n);
    ck_assert_int_eq(notify_send(n, "READY=1"), 0);
    ck_assert_int_eq(notify_ready(n, "x"), 0);
    ck_assert_int_eq(notify_reloading(n), 0);
    ck_assert_int_eq(notify_stopping(n), 0);
    ck_assert_int_eq(notify_watchdog(n), 0);
    ck_assert_int_eq(notify_status(n, "%d", 1), 0);
    notify_free(n);

    ck_assert_int_eq(setenv("NOTIFY_SOCKET", "", 1), 0);
    ck_assert_ptr_null(notify_new());
}
END_TEST

START_TEST(test_path_socket)
{
    struct manager m;

    manager_open_or_fail(&m, false);
    check_messages(&m);
    manager_close(&m);
}
END_TEST

START_TEST(test_abstract_socket)
{
    struct manager m;

    manager_open_or_fail(&m, true);
    check_messages(&m);
    manager_close(&m);
}
END_TEST

/* Only absolute paths and @names are addresses; anything else is refused, not guessed at. */
START_TEST(test_bad_address)
{
    static const char *const bad[] = {"relative/notify", "vsock:2:1234", "@", "/"};
    char longpath[200];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_int_eq(setenv("NOTIFY_SOCKET", bad[i], 1), 0);
        ck_assert_msg(notify_new() == NULL, "NOTIFY_SOCKET=%s accepted", bad[i]);
    }
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    ck_assert_int_eq(setenv("NOTIFY_SOCKET", longpath, 1), 0);
    ck_assert_ptr_null(notify_new());
    unsetenv("NOTIFY_SOCKET");
}
END_TEST

/* A manager that has gone away is an error to report, not a crash or a hang. */
START_TEST(test_no_listener)
{
    struct manager m;
    struct notify *n;

    manager_open_or_fail(&m, false);
    n = notify_new();
    ck_assert_ptr_nonnull(n);
    close(m.m_fd);
    unlink(m.m_addr);
    ck_assert_int_eq(notify_ready(n, NULL), -ENOENT);
    m.m_fd = -1;
    notify_free(n);
    manager_close(&m);
}
END_TEST

/*
 * A manager that does not read must not stall the event loop: once its
 * queue is full, sends fail with EAGAIN instead of blocking.
 */
START_TEST(test_full_queue_does_not_block)
{
    struct manager m;
    struct notify *n;
    int r = 0, sent = 0;

    manager_open_or_fail(&m, false);
    n = notify_new();
    ck_assert_ptr_nonnull(n);
    while (sent < 100000 && (r = notify_watchdog(n)) == 0)
        sent++;
    ck_assert_int_eq(r, -EAGAIN);
    ck_assert_int_gt(sent, 0);
    manager_expect(&m, "WATCHDOG=1");
    notify_free(n);
    manager_close(&m);
}
END_TEST

START_TEST(test_too_long)
{
    struct manager m;
    struct notify *n;
    char *big = malloc(10000);

    ck_assert_ptr_nonnull(big);
    memset(big, 'x', 9999);
    big[9999] = '\0';
    manager_open_or_fail(&m, false);
    n = notify_new();
    ck_assert_ptr_nonnull(n);
    ck_assert_int_eq(notify_status(n, "%s", big), -EMSGSIZE);
    ck_assert_int_eq(notify_stopping(n), 0);
    manager_expect(&m, "STOPPING=1");
    notify_free(n);
    manager_close(&m);
    free(big);
}
END_TEST

START_TEST(test_watchdog_usec)
{
    char pid[32];

    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    ck_assert_uint_eq(notify_watchdog_usec(), 0);

    ck_assert_int_eq(setenv("WATCHDOG_USEC", "30000000", 1), 0);
    ck_assert_uint_eq(notify_watchdog_usec(), 30000000);

    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    ck_assert_int_eq(setenv("WATCHDOG_PID", pid, 1), 0);
    ck_assert_uint_eq(notify_watchdog_usec(), 30000000);

    snprintf(pid, sizeof(pid), "%ld", (long)getpid() + 1);
    ck_assert_int_eq(setenv("WATCHDOG_PID", pid, 1), 0);
    ck_assert_uint_eq(notify_watchdog_usec(), 0);

    ck_assert_int_eq(setenv("WATCHDOG_PID", "self", 1), 0);
    ck_assert_uint_eq(notify_watchdog_usec(), 0);
    unsetenv("WATCHDOG_PID");

    ck_assert_int_eq(setenv("WATCHDOG_USEC", "30s", 1), 0);
    ck_assert_uint_eq(notify_watchdog_usec(), 0);
    ck_assert_int_eq(setenv("WATCHDOG_USEC", "-1", 1), 0);
    ck_assert_uint_eq(notify_watchdog_usec(), 0);
    ck_assert_int_eq(setenv("WATCHDOG_USEC", "", 1), 0);
    ck_assert_uint_eq(notify_watchdog_usec(), 0);
    ck_assert_int_eq(setenv("WATCHDOG_USEC", "99999999999999999999999", 1), 0);
    ck_assert_uint_eq(notify_watchdog_usec(), 0);
    unsetenv("WATCHDOG_USEC");
}
END_TEST

static Suite *
notify_suite(void)
{
    Suite *s = suite_create("notify");
    TCase *tc = tcase_create("protocol");

    tcase_add_unchecked_fixture(tc, scratch_setup, scratch_teardown);
    tcase_add_test(tc, test_unset_is_noop);
    tcase_add_test(tc, test_path_socket);
    tcase_add_test(tc, test_abstract_socket);
    tcase_add_test(tc, test_bad_address);
    tcase_add_test(tc, test_no_listener);
    tcase_add_test(tc, test_full_queue_does_not_block);
    tcase_add_test(tc, test_too_long);
    tcase_add_test(tc, test_watchdog_usec);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return check_main(notify_suite(), CK_NORMAL);
}
