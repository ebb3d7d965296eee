/* test-upper.c: the echo transform, checked byte by byte against the definition. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "check-main.h"
#include "upper.h"

/* The definition, written as plainly as possible and independently of upper.c. */
static unsigned char
ref_upper(unsigned char c)
{
    if (c >= 'a' && c <= 'z')
        return (unsigned char)(c - 'a' + 'A');
    return c;
}

START_TEST(test_all_bytes)
{
    unsigned char buf[256], src[256];

    for (int i = 0; i < 256; i++)
        buf[i] = src[i] = (unsigned char)i;
    upper_inplace(buf, sizeof(buf));
    for (int i = 0; i < 256; i++) {
        unsigned char want =
            (i >= 0x61 && i <= 0x7a) ? (unsigned char)(i - 0x20) : (unsigned char)i;

        ck_assert_msg(buf[i] == want, "byte 0x%02x became 0x%02x, want 0x%02x", i, buf[i], want);
    }
    ck_assert(upper_equal(buf, src, sizeof(buf), NULL));
}
END_TEST

/*
 * Every length from 0 to 4096 at every alignment 0..15, with guard bytes on
 * both sides: a vectorized loop that over- or under-runs shows up here.
 */
START_TEST(test_lengths_and_alignments)
{
    enum { MAXLEN = 4096, PAD = 64 };
    unsigned char *src = malloc(MAXLEN + 2 * PAD);
    unsigned char *buf = malloc(MAXLEN + 2 * PAD);
    unsigned char *dst = malloc(MAXLEN + 2 * PAD);
    unsigned seed = 12345;

    ck_assert(src != NULL && buf != NULL && dst != NULL);
    for (size_t i = 0; i < MAXLEN + 2 * PAD; i++) {
        seed = seed * 1103515245u + 12345u;
        src[i] = (unsigned char)(seed >> 16);
    }
    for (size_t align = 0; align < 16; align++) {
        for (size_t len = 0; len <= MAXLEN; len++) {
            memcpy(buf, src, MAXLEN + 2 * PAD);
            memset(dst, 0xa5, MAXLEN + 2 * PAD);
            upper_inplace(buf + PAD + align, len);
            upper_copy(dst + PAD + align, src + PAD + align, len);
            for (size_t i = 0; i < MAXLEN + 2 * PAD; i++) {
                int inside = i >= PAD + align && i < PAD + align + len;
                unsigned char want = inside ? ref_upper(src[i]) : src[i];

                if (buf[i] != want)
                    ck_abort_msg("in place: len %zu align %zu: byte %zu is 0x%02x, want 0x%02x",
                                 len, align, i, buf[i], want);
                if (inside ? dst[i] != want : dst[i] != 0xa5)
                    ck_abort_msg("copy: len %zu align %zu: byte %zu is 0x%02x", len, align, i,
                                 dst[i]);
            }
        }
    }
    free(src);
    free(buf);
    free(dst);
}
END_TEST

START_TEST(test_equal_reports_first_difference)
{
    const unsigned char sent[] = "hello, world\0zz";
    unsigned char reply[sizeof(sent)];
    size_t where = 99;

    upper_copy(reply, sent, sizeof(sent));
    ck_assert(upper_equal(reply, sent, sizeof(sent), &where));
    ck_assert_uint_eq(where, 99);
    reply[7] = 'w';
    ck_assert(!upper_equal(reply, sent, sizeof(sent), &where));
    ck_assert_uint_eq(where, 7);
    /* A reply that is the request unchanged is wrong wherever a letter was. */
    ck_assert(!upper_equal(sent, sent, sizeof(sent), &where));
    ck_assert_uint_eq(where, 0);
    ck_assert(upper_equal(reply, sent, 0, &where));
}
END_TEST

/* A single wrong byte anywhere, in a whole block or in the tail, is found at its offset. */
START_TEST(test_equal_every_position)
{
    enum { LEN = 200 };
    unsigned char sent[LEN], reply[LEN];
    size_t where;

    for (size_t i = 0; i < LEN; i++)
        sent[i] = (unsigned char)('a' + i % 40);
    upper_copy(reply, sent, LEN);
    for (size_t pos = 0; pos < LEN; pos++) {
        for (size_t len = pos + 1; len <= LEN; len += 37) {
            reply[pos] ^= 0x01;
            where = LEN;
            ck_assert_msg(!upper_equal(reply, sent, len, &where), "len %zu: byte %zu missed", len,
                          pos);
            ck_assert_uint_eq(where, pos);
            reply[pos] ^= 0x01;
            ck_assert(upper_equal(reply, sent, len, NULL));
        }
    }
}
END_TEST

static Suite *
upper_suite(void)
{
    Suite *s = suite_create("upper");
    TCase *tc = tcase_create("transform");

    tcase_add_test(tc, test_all_bytes);
    tcase_add_test(tc, test_lengths_and_alignments);
    tcase_add_test(tc, test_equal_reports_first_difference);
    tcase_add_test(tc, test_equal_every_position);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return check_main(upper_suite(), CK_NORMAL);
}
