/* fuzz-config.c: libFuzzer target feeding arbitrary bytes to the INI parser. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define FUZZ_NAME "fuzz.ini"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Whatever the input, each error must be one line that starts with the
 * name the caller passed, so that it can go to a log as is.
 */
static void
fuzz_error(void *arg, const char *msg)
{
    int *count = arg;

    if (strncmp(msg, FUZZ_NAME ":", sizeof(FUZZ_NAME)) != 0 || strchr(msg, '\n') != NULL ||
        strchr(msg, '\r') != NULL) {
        fprintf(stderr, "bad error message: %s\n", msg);
        abort();
    }
    (*count)++;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct upechod_config *cf;
    char *text;
    int count = 0, rc;

    if ((text = malloc(size + 1)) == NULL)
        return 0;
    if ((cf = malloc(sizeof(*cf))) == NULL) {
        free(text);
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';

    rc = config_parse_string(cf, FUZZ_NAME, text, fuzz_error, &count);
    /* The return value is the number of errors reported, and a valid result is consistent. */
    if (rc != count ||
        (rc == 0 &&
         (cf->cf_tcp_nlisten > CONFIG_MAX_LISTEN || cf->cf_udp_nlisten > CONFIG_MAX_LISTEN ||
          cf->cf_unix_path[0] != '/' || cf->cf_max_pending_output < 4096))) {
        fprintf(stderr, "inconsistent result: rc %d, %d messages\n", rc, count);
        abort();
    }
    free(cf);
    free(text);
    return 0;
}
