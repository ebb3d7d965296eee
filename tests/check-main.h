/* check-main.h: the end of every check test program's main(), run a suite and exit by its result.
 */
#ifndef UPECHOD_CHECK_MAIN_H
#define UPECHOD_CHECK_MAIN_H

/*
 * Header-only, so that unit tests need neither the harness nor another
 * library.  CK_FORK, CK_RUN_CASE, CK_VERBOSITY (with CK_ENV) and the other
 * CK_* variables keep working: check reads them itself.
 */
#include <check.h>
#include <stdlib.h>

/* Runs every test of s, printing in mode: EXIT_SUCCESS if none failed, else EXIT_FAILURE. */
static inline int
check_main(Suite *s, enum print_output mode)
{
    SRunner *sr = srunner_create(s);
    int failed;

    srunner_run_all(sr, mode);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif
