/* test-cli.c: the daemon's command line, config errors and start-up failures. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check-main.h"
#include "harness.h"
#include "upechod-build.h"

#define EXIT_USAGE 64
#define EXIT_CONFIG 78

static const char good_ini[] = "[tcp]\n"
                               "enabled = yes\n"
                               "listen = 127.0.0.1:0\n"
                               "backlog = 1024\n"
                               "[udp]\n"
                               "enabled = yes\n"
                               "listen = 127.0.0.1:0\n"
                               "[unix]\n"
                               "enabled = no\n"
                               "path = @DIR@/upechod.sock\n"
                               "mode = 0660\n"
                               "[log]\n"
                               "level = info\n"
                               "[limits]\n"
                               "max_connections = 10000\n"
                               "max_pending_output = 1M\n"
                               "idle_timeout = 300\n"
                               "shutdown_timeout = 10\n";

/* Run the daemon with args to completion (bounded) and return its exit status. */
static int
run(struct daemon_proc *dp, const char *ini, const char *const *args)
{
    int r = daemon_spawn(dp, ini, args), status = -1;

    ck_assert_msg(r == 0, "daemon_spawn: %s", strerror(-r));
    r = daemon_wait(dp, 10000, &status);
    ck_assert_msg(r == 0, "still running after 10 s");
    return status;
}

START_TEST(test_check_good)
{
    static const char *const args[] = {"-t", NULL};
    struct daemon_proc dp;

    ck_assert_int_eq(run(&dp, good_ini, args), 0);
    ck_assert(daemon_log_contains(&dp, "configuration OK"));
    ck_assert(!daemon_log_contains(&dp, "listening on"));
    daemon_stop(&dp);
}
END_TEST

/*
 * Each bad config must exit 78 and say FILE:LINE for the line at fault, both
 * under -t and on a real start.  The unknown section is reported either at
 * its header or at its first key; both name the right place.
 */
static const struct {
    const char *name;
    const char *ini;
    int line, alt_line;
    const char *mention;
} bad_configs[] = {
    {"bad port", "[tcp]\nenabled = yes\nlisten = 127.0.0.1:99999\n", 3, 3, "listen"},
    {"unknown key", "[tcp]\nenabled = yes\nfrobnicate = 1\n", 3, 3, "frobnicate"},
    {"unknown section", "[log]\nlevel = info\n[nosuch]\nkey = 1\n", 3, 4, "nosuch"},
    {"missing ]", "[log]\nlevel = info\n[tcp\nenabled = yes\n", 3, 3, NULL},
    {"bad boolean", "[udp]\nenabled = perhaps\n", 2, 2, "enabled"},
    {"bad size", "[limits]\nmax_connections = 10\nmax_pending_output = lots\n", 3, 3,
     "max_pending_output"},
    {"too-long line",
     "[log]\nlevel = info\n[tcp]\nlisten = "
     "127.0.0.1:0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
     "[udp]\nenabled = yes\n",
     4, 4, NULL},
};

START_TEST(test_bad_config)
{
    static const char *const check_args[] = {"-t", NULL};
    const char *const *args = _i % 2 == 0 ? check_args : NULL;
    char where[4200], alt[4200];
    size_t k = (size_t)_i / 2;
    struct daemon_proc dp;
    int status;

    status = run(&dp, bad_configs[k].ini, args);
    ck_assert_msg(status == EXIT_CONFIG, "%s%s: exit status %d", bad_configs[k].name,
                  args != NULL ? " (-t)" : "", status);
    snprintf(where, sizeof(where), "%s:%d:", dp.dp_config, bad_configs[k].line);
    snprintf(alt, sizeof(alt), "%s:%d:", dp.dp_config, bad_configs[k].alt_line);
    if (!daemon_log_contains(&dp, where) && !daemon_log_contains(&dp, alt)) {
        daemon_dump_log(&dp);
        ck_abort_msg("%s: no error naming %s", bad_configs[k].name, where);
    }
    if (bad_configs[k].mention != NULL)
        ck_assert_msg(daemon_log_contains(&dp, bad_configs[k].mention), "%s: %s not named",
                      bad_configs[k].name, bad_configs[k].mention);
    ck_assert(!daemon_log_contains(&dp, "listening on"));
    ck_assert(!daemon_log_contains(&dp, "configuration OK"));
    daemon_stop(&dp);
}
END_TEST

START_TEST(test_missing_config)
{
    static const char *const args[] = {"-c", "/nonexistent/upechod.ini", NULL};
    struct daemon_proc dp;
    int status = run(&dp, NULL, args);

    ck_assert_int_ne(status, 0);
    ck_assert(daemon_log_contains(&dp, "/nonexistent/upechod.ini"));
    daemon_stop(&dp);
}
END_TEST

START_TEST(test_usage_errors)
{
    static const char *const unknown[] = {"-Z", NULL};
    static const char *const no_arg[] = {"-c", NULL};
    static const char *const extra[] = {"-t", "stray-argument", NULL};
    static const char *const *const cases[] = {unknown, no_arg, extra};
    struct daemon_proc dp;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* The stray-argument case needs a config that would otherwise be fine. */
        int status = run(&dp, i == 2 ? good_ini : NULL, cases[i]);
        ck_assert_msg(status == EXIT_USAGE, "%s: exit status %d", cases[i][0], status);
        daemon_stop(&dp);
    }
}
END_TEST

START_TEST(test_version)
{
    static const char *const args[] = {"-V", NULL};
    struct daemon_proc dp;

    ck_assert_int_eq(run(&dp, NULL, args), 0);
    ck_assert_msg(daemon_log_contains(&dp, UPECHOD_VERSION), "no %s in -V output", UPECHOD_VERSION);
    daemon_stop(&dp);
}
END_TEST

START_TEST(test_help)
{
    static const char *const args[] = {"-h", NULL};
    struct daemon_proc dp;

    ck_assert_int_eq(run(&dp, NULL, args), 0);
    ck_assert(daemon_log_contains(&dp, "-c"));
    ck_assert(daemon_log_contains(&dp, "-t"));
    daemon_stop(&dp);
}
END_TEST

/*
 * Run argv (argv[0] is the daemon) with stdout and stderr into a file of
 * our own, as journald's stream when journal is set (JOURNAL_STREAM naming
 * that file), and read back what it wrote into out.  Returns the exit status.
 */
static int
run_logged(const char *const *argv, int journal, char *out, size_t outsz)
{
    char path[] = "/tmp/upechod-cli-XXXXXX", env[64];
    struct stat st;
    int fd = mkstemp(path), status = -1;
    ssize_t n;
    pid_t pid;

    ck_assert_int_ge(fd, 0);
    unlink(path);
    ck_assert_int_eq(fstat(fd, &st), 0);
    snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        if (journal)
            setenv("JOURNAL_STREAM", env, 1);
        else
            unsetenv("JOURNAL_STREAM");
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    n = pread(fd, out, outsz - 1, 0);
    close(fd);
    out[n > 0 ? n : 0] = '\0';
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/*
 * Configuration errors are errors to the journal too (<3>, so that
 * journalctl -p warning shows them, at start and from the -t a reload
 * runs), and plain FILE:LINE lines elsewhere; -t only checks, so it does
 * not say "not starting".
 */
START_TEST(test_config_error_priority)
{
    char ini[] = "/tmp/upechod-cli-ini-XXXXXX", out[8192], want[128];
    const char *const check[] = {getenv("UPECHOD"), "-t", "-c", ini, NULL};
    const char *const start[] = {getenv("UPECHOD"), "-c", ini, NULL};
    int fd = mkstemp(ini);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_gt(write(fd, "[tcp]\nlisten = 127.0.0.1:99999\n", 31), 0);
    close(fd);
    snprintf(want, sizeof(want), "%s:2: ", ini);

    for (int journal = 0; journal <= 1; journal++) {
        for (int t = 0; t <= 1; t++) {
            const char *line = out;

            ck_assert_int_eq(run_logged(t ? check : start, journal, out, sizeof(out)), EXIT_CONFIG);
            ck_assert_msg(strstr(out, want) != NULL, "no %s in: %s", want, out);
            ck_assert_msg(strstr(out, "1 error") != NULL, "no count in: %s", out);
            ck_assert_msg((strstr(out, "not starting") == NULL) == t, "%s: %s", t ? "-t" : "start",
                          out);
            /* Every line: <3> under the journal, plain (no time or level) otherwise. */
            for (; *line != '\0'; line = strchr(line, '\n') + 1) {
                if (journal)
                    ck_assert_msg(strncmp(line, "<3>", 3) == 0, "not an error: %s", out);
                else
                    ck_assert_msg(line[0] != '<' && strncmp(line, "20", 2) != 0, "not plain: %s",
                                  out);
                if (strchr(line, '\n') == NULL)
                    break;
            }
        }
    }
    unlink(ini);
}
END_TEST

/* A port someone else holds is a start-up failure, not a config error. */
START_TEST(test_tcp_address_in_use)
{
    struct daemon_proc dp;
    char ini[512], addr[64];
    int port = 0, status = -1;
    int lfd = tcp_listen_on(AF_INET, 0, &port);

    ck_assert_int_ge(lfd, 0);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    snprintf(ini, sizeof(ini), "[tcp]\nenabled = yes\nlisten = %s\n[udp]\nenabled = no\n", addr);
    ck_assert_int_eq(daemon_start(&dp, ini), -ECHILD);
    ck_assert_int_eq(daemon_wait(&dp, 1000, &status), 0);
    ck_assert_msg(status != 0 && status != EXIT_CONFIG, "exit status %d", status);
    ck_assert_msg(daemon_log_contains(&dp, addr), "the error does not name %s", addr);
    daemon_stop(&dp);
    close(lfd);
}
END_TEST

START_TEST(test_udp_address_in_use)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    struct daemon_proc dp;
    char ini[512], addr[64];
    int status = -1;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sin.sin_port));
    snprintf(ini, sizeof(ini), "[tcp]\nenabled = no\n[udp]\nenabled = yes\nlisten = %s\n", addr);
    ck_assert_int_eq(daemon_start(&dp, ini), -ECHILD);
    ck_assert_int_eq(daemon_wait(&dp, 1000, &status), 0);
    ck_assert_msg(status != 0 && status != EXIT_CONFIG, "exit status %d", status);
    ck_assert_msg(daemon_log_contains(&dp, addr), "the error does not name %s", addr);
    daemon_stop(&dp);
    close(fd);
}
END_TEST

static Suite *
cli_suite(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("cli");

    tcase_add_test(tc, test_check_good);
    tcase_add_loop_test(tc, test_bad_config, 0,
                        (int)(2 * sizeof(bad_configs) / sizeof(bad_configs[0])));
    tcase_add_test(tc, test_missing_config);
    tcase_add_test(tc, test_config_error_priority);
    tcase_add_test(tc, test_usage_errors);
    tcase_add_test(tc, test_version);
    tcase_add_test(tc, test_help);
    tcase_add_test(tc, test_tcp_address_in_use);
    tcase_add_test(tc, test_udp_address_in_use);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return check_main(cli_suite(), CK_ENV);
}
