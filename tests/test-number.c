/* test-number.c: whole-string unsigned numbers (src/number.c). */
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include "check-main.h"
#include "number.h"

/* Parse text in base, which must give want. */
static void
check_ok(const char *text, int base, unsigned long long want)
{
    unsigned long long v = 12345;

    ck_assert_msg(number_parse(text, base, &v) == 0, "%s (base %d) not parsed", text, base);
    ck_assert_msg(v == want, "%s (base %d): %llu, not %llu", text, base, v, want);
}

/* Parse text in base, which must fail with rc and leave *out alone. */
static void
check_bad(const char *text, int base, int rc)
{
    unsigned long long v = 12345;

    ck_assert_msg(number_parse(text, base, &v) == rc, "%s (base %d): not %d", text, base, rc);
    ck_assert_msg(v == 12345, "%s (base %d): output written on failure", text, base);
}

START_TEST(test_number_decimal)
{
    check_ok("0", 10, 0);
    check_ok("000", 10, 0);
    check_ok("65535", 10, 65535);
    check_ok("0123", 10, 123);
    check_ok("18446744073709551615", 10, ULLONG_MAX);
}
END_TEST

/* What strtoull() would accept but a config value or a systemd variable must not hold. */
START_TEST(test_number_only_digits)
{
    static const char *const bad[] = {"",   " 1",  "1 ",  "+1", "-1", "0x10",
                                      "1a", "1.0", "1e3", "١",  "\t7"};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        check_bad(bad[i], 10, -EINVAL);
}
END_TEST

START_TEST(test_number_range)
{
    check_bad("18446744073709551616", 10, -ERANGE);
    check_bad("99999999999999999999999", 10, -ERANGE);
    check_ok("1777777777777777777777", 8, ULLONG_MAX);
    check_bad("2000000000000000000000", 8, -ERANGE);
}
END_TEST

START_TEST(test_number_octal)
{
    check_ok("0660", 8, 0660);
    check_ok("7777", 8, 07777);
    check_bad("0668", 8, -EINVAL);
    check_bad("9", 8, -EINVAL);
}
END_TEST

static Suite *
number_suite(void)
{
    Suite *s = suite_create("number");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_number_decimal);
    tcase_add_test(tc, test_number_only_digits);
    tcase_add_test(tc, test_number_range);
    tcase_add_test(tc, test_number_octal);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return check_main(number_suite(), CK_NORMAL);
}
