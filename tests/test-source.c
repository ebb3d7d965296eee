/* test-source.c: unit tests for source.c, connections counted per client source. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "check-main.h"
#include "source.h"

/* A sockaddr for a literal IPv4 or IPv6 address. */
static struct sockaddr_storage
source_addr(const char *text)
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof(ss));
    if (strchr(text, ':') != NULL) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

        s6->sin6_family = AF_INET6;
        ck_assert_int_eq(inet_pton(AF_INET6, text, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

        s4->sin_family = AF_INET;
        ck_assert_int_eq(inet_pton(AF_INET, text, &s4->sin_addr), 1);
    }
    return ss;
}

static int
acquire(struct source_table *t, const char *text, size_t limit, struct source **s)
{
    struct sockaddr_storage ss = source_addr(text);

    return source_acquire(t, (struct sockaddr *)&ss, limit, s);
}

/* IPv4 by address, IPv6 by /64, an IPv4-mapped IPv6 address as its IPv4 one. */
START_TEST(test_source_grouping)
{
    struct source_table *t = source_table_new();
    struct source *a[3], *b, *c, *d, *e;

    ck_assert_ptr_nonnull(t);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(acquire(t, "192.0.2.1", 3, &a[i]), 0);
    ck_assert_int_eq(acquire(t, "::ffff:192.0.2.1", 3, &a[2]), 0);
    ck_assert_ptr_eq(a[0], a[1]);
    ck_assert_ptr_eq(a[0], a[2]);
    ck_assert_uint_eq(source_count(a[0]), 3);
    ck_assert_int_eq(acquire(t, "192.0.2.1", 3, &b), -EUSERS);
    ck_assert_ptr_null(b);
    /* The next address is another source. */
    ck_assert_int_eq(acquire(t, "192.0.2.2", 3, &b), 0);
    ck_assert_ptr_ne(a[0], b);

    /* Two hosts of one /64 are one source; the next /64 is another. */
    ck_assert_int_eq(acquire(t, "2001:db8:0:1::1", 2, &c), 0);
    ck_assert_int_eq(acquire(t, "2001:db8:0:1:ffff::2", 2, &d), 0);
    ck_assert_ptr_eq(c, d);
    ck_assert_int_eq(acquire(t, "2001:db8:0:1::3", 2, &e), -EUSERS);
    ck_assert_int_eq(acquire(t, "2001:db8:0:2::1", 2, &e), 0);
    ck_assert_ptr_ne(c, e);

    /* Closing brings the count down; at zero the source is gone and starts afresh. */
    source_release(t, a[0]);
    ck_assert_int_eq(acquire(t, "192.0.2.1", 3, &a[0]), 0);
    for (int i = 0; i < 3; i++)
        source_release(t, a[i]);
    source_release(t, NULL);
    ck_assert_int_eq(acquire(t, "192.0.2.1", 1, &a[0]), 0);
    ck_assert_uint_eq(source_count(a[0]), 1);
    source_table_free(t);
}
END_TEST

/* Limit 0 is no limit; AF_UNIX peers are not counted at all. */
START_TEST(test_source_unlimited_and_unix)
{
    struct source_table *t = source_table_new();
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    struct source *s = NULL;

    ck_assert_ptr_nonnull(t);
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(acquire(t, "198.51.100.7", 0, &s), 0);
    ck_assert_uint_eq(source_count(s), 1000);
    ck_assert_int_eq(source_acquire(t, (struct sockaddr *)&sun, 1, &s), 0);
    ck_assert_ptr_null(s);
    ck_assert_uint_eq(source_count(s), 0);
    /* Freed with entries still in it: nothing leaks (ASan checks). */
    source_table_free(t);
    source_table_free(NULL);
}
END_TEST

/* Many sources at once, each counted apart: no two are confused whatever the buckets. */
START_TEST(test_source_many)
{
    struct source_table *t = source_table_new();
    static struct source *s[20000];
    char text[64];

    ck_assert_ptr_nonnull(t);
    for (int i = 0; i < 20000; i++) {
        snprintf(text, sizeof(text), "10.%d.%d.1", i / 256, i % 256);
        ck_assert_int_eq(acquire(t, text, 1, &s[i]), 0);
    }
    for (int i = 0; i < 20000; i += 2)
        source_release(t, s[i]);
    for (int i = 0; i < 20000; i++) {
        struct source *x;

        snprintf(text, sizeof(text), "10.%d.%d.1", i / 256, i % 256);
        ck_assert_int_eq(acquire(t, text, 1, &x), i % 2 ? -EUSERS : 0);
    }
    source_table_free(t);
}
END_TEST

int
main(void)
{
    Suite *su = suite_create("source");
    TCase *tc = tcase_create("source");

    tcase_add_test(tc, test_source_grouping);
    tcase_add_test(tc, test_source_unlimited_and_unix);
    tcase_add_test(tc, test_source_many);
    suite_add_tcase(su, tc);
    return check_main(su, CK_ENV);
}
