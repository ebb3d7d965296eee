/* main.c: upechod's command line; everything else lives in the core library. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "server.h"
#include "upechod-build.h"

static void
usage(FILE *f)
{
    fprintf(
        f,
        "usage: upechod [-t] [-c FILE]\n"
        "Echo everything received over TCP, UDP and AF_UNIX, with a-z uppercased.\n"
        "\n"
        "  -c, --config FILE  read the configuration from FILE\n"
        "                     (default: %s if it exists, else built-in defaults)\n"
        "  -t, --test         check the configuration, print \"configuration OK\", bind nothing\n"
        "  -V, --version      print the version and exit\n"
        "  -h, --help         print this help and exit\n"
        "\n"
        "Exit status: 0 clean stop, 1 start-up failure or unclean stop, 64 usage error,\n"
        "75 stop that closed connections still owed echo (shutdown_timeout ran out or a\n"
        "second SIGTERM) or left a stuck worker, 78 configuration error (including an\n"
        "unknown user or unusable passed sockets).\n",
        UPECHOD_DEFAULT_CONFIG);
}

/* Each configuration error, at error priority under the journal (-p warning shows it). */
static void
main_config_error(void *arg, const char *msg)
{
    log_error("%s", msg);
}

int
main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct upechod_config *cf;
    struct server *srv;
    const char *path = NULL;
    int test = 0, ch, rc;

    while ((ch = getopt_long(argc, argv, "c:tVh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            path = optarg;
            break;
        case 't':
            test = 1;
            break;
        case 'V':
            printf("upechod %s\n", UPECHOD_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EX_USAGE;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "upechod: unexpected argument: %s\n", argv[optind]);
        usage(stderr);
        return EX_USAGE;
    }

    log_init(LOG_LEVEL_INFO);
    /* Configuration errors read as plain FILE:LINE lines on a terminal. */
    log_set_plain(1);
    if ((cf = malloc(sizeof(*cf))) == NULL) {
        fprintf(stderr, "upechod: out of memory\n");
        return 1;
    }
    if ((rc = config_load(cf, path, main_config_error, NULL)) != 0) {
        if (rc > 0)
            log_error("upechod: %s: %d error%s%s", cf->cf_file, rc, rc == 1 ? "" : "s",
                      test ? "" : ", not starting");
        free(cf);
        return EX_CONFIG;
    }
    if (test) {
        printf("configuration OK\n");
        free(cf);
        return 0;
    }

    log_set_plain(0);
    log_set_level(cf->cf_log_level);
    if (cf->cf_file[0] == '\0')
        log_info("no configuration file at %s; running on built-in defaults",
                 UPECHOD_DEFAULT_CONFIG);
    /* What SIGHUP re-reads: the same file, or the same search when there was none. */
    if ((srv = server_new(cf, cf->cf_file)) == NULL) {
        log_error("cannot set up the event loop: out of memory");
        free(cf);
        return 1;
    }
    free(cf);
    rc = server_start(srv);
    if (rc == 0)
        rc = server_run(srv);
    else
        rc = rc == SERVER_ECONFIG ? EX_CONFIG : 1;
    /*
     * A worker stuck in its loop did not end: the stop was bounded all the
     * same.  Its thread may still touch the server, so nothing is freed and
     * no exit handler runs; the log is written unbuffered.
     */
    if (server_stuck(srv))
        _exit(rc);
    server_free(srv);
    return rc;
}
