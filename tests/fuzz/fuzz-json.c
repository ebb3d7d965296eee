/* fuzz-json.c: libFuzzer target feeding arbitrary bytes to the JSON reader and the plot. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "plot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *fuzz_null;

/*
 * The bytes are not NUL-terminated, so a read past size is caught.  A
 * parse must give a tree whose counts match its lists; what reads as a run
 * is drawn, which must not fail or misbehave on any values.
 */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct json *j = NULL;
    struct json_error je;
    struct plot_run pr;
    char why[256];
    int rc;

    rc = json_parse((const char *)data, size, &j, &je);
    if (rc == 0) {
        size_t n = 0;

        for (const struct json *c = j->j_child; c != NULL; c = c->j_next)
            n++;
        if (n != j->j_count)
            abort();
        json_free(j);
    } else if (j != NULL || je.je_why == NULL || je.je_line == 0 || je.je_column == 0) {
        abort();
    }
    rc = plot_run_parse(&pr, (const char *)data, size, "fuzz.json", why, sizeof(why));
    if (rc == 0) {
        if (fuzz_null == NULL)
            fuzz_null = fopen("/dev/null", "w");
        if (fuzz_null != NULL && plot_write(fuzz_null, &pr, 1) < 0)
            abort();
        plot_run_deinit(&pr);
    } else if (rc == -EINVAL && why[0] == '\0') {
        abort();
    }
    return 0;
}
