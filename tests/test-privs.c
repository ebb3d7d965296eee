/* test-privs.c: started as root, the daemon binds, then serves as an unprivileged user. */
#include <check.h>
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check-helpers.h"
#include "check-main.h"
#include "harness.h"

static const char unknown_ini[] = INI_TCP4_ONLY "[server]\n"
                                                "user = upechod-no-such-user\n";

/* The value of "key:" in /proc/PID/status, tabs turned into spaces. */
static void
proc_status(pid_t pid, const char *key, char *val, size_t size)
{
    char path[64], line[512];
    size_t klen = strlen(key);
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "re");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    val[0] = '\0';
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, key, klen) != 0 || line[klen] != ':')
            continue;
        const char *p = line + klen + 1;
        while (*p == '\t' || *p == ' ')
            p++;
        snprintf(val, size, "%s", p);
        val[strcspn(val, "\n")] = '\0';
        for (char *q = val; *q != '\0'; q++)
            if (*q == '\t')
                *q = ' ';
        break;
    }
    fclose(f);
}

/* A free TCP port below 1024 on 127.0.0.1, which only root may bind. */
static int
free_privileged_port(void)
{
    for (int port = 900; port < 1000; port++) {
        int bound, fd = tcp_listen_on(AF_INET, port, &bound);

        if (fd >= 0) {
            close(fd);
            return port;
        }
    }
    ck_abort_msg("no free TCP port from 900 to 999");
    return -1;
}

/*
 * [server] user = nobody: the daemon binds a privileged port first, then
 * runs with nobody's uid and gid in all four slots, no capabilities and no
 * root group, and still serves TCP and UDP.
 */
START_TEST(test_runs_as_nobody)
{
    struct passwd *pw = getpwnam("nobody");
    char ini[512], want[128], got[128], buf[16];
    struct daemon_proc dp;
    int port, fd;

    if (geteuid() != 0) {
        fprintf(stderr, "test_runs_as_nobody: skipped: needs to be started as root\n");
        return;
    }
    if (pw == NULL) {
        fprintf(stderr, "test_runs_as_nobody: skipped: no user nobody here\n");
        return;
    }
    port = free_privileged_port();
    snprintf(ini, sizeof(ini),
             "[tcp]\nlisten = 127.0.0.1:%d\n[udp]\nlisten = 127.0.0.1:0\n[server]\nuser = nobody\n",
             port);
    start_or_fail(&dp, ini);
    ck_assert_int_eq(dp.dp_tcp_port, port);

    snprintf(want, sizeof(want), "%u %u %u %u", (unsigned)pw->pw_uid, (unsigned)pw->pw_uid,
             (unsigned)pw->pw_uid, (unsigned)pw->pw_uid);
    proc_status(dp.dp_pid, "Uid", got, sizeof(got));
    ck_assert_str_eq(got, want);
    snprintf(want, sizeof(want), "%u %u %u %u", (unsigned)pw->pw_gid, (unsigned)pw->pw_gid,
             (unsigned)pw->pw_gid, (unsigned)pw->pw_gid);
    proc_status(dp.dp_pid, "Gid", got, sizeof(got));
    ck_assert_str_eq(got, want);
    proc_status(dp.dp_pid, "Groups", got, sizeof(got));
    for (char *tok = strtok(got, " "); tok != NULL; tok = strtok(NULL, " "))
        ck_assert_msg(strcmp(tok, "0") != 0, "still in group 0");
    proc_status(dp.dp_pid, "CapEff", got, sizeof(got));
    ck_assert_str_eq(got, "0000000000000000");
    ck_assert(daemon_log_contains(&dp, "running as user nobody"));
    ck_assert(!daemon_log_contains(&dp, "running as root"));

    fd = tcp_connect(AF_INET, port);
    ck_assert_msg(fd >= 0, "tcp_connect: %s", strerror(-fd));
    ck_assert_int_eq(write_all(fd, "unprivileged", 12), 0);
    ck_assert_int_eq(read_exact(fd, buf, 12, 5000), 12);
    ck_assert_mem_eq(buf, "UNPRIVILEGED", 12);
    close(fd);
    fd = udp_socket_for(dp.dp_udp_port);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(send(fd, "datagram", 8, 0), 8);
    ck_assert_int_eq(read_exact(fd, buf, 8, 5000), 8);
    ck_assert_mem_eq(buf, "DATAGRAM", 8);
    close(fd);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/*
 * A user that does not exist: the daemon never gets ready, says which user
 * and why in one line, and exits 78 (a configuration error a restart
 * cannot fix).
 */
START_TEST(test_unknown_user)
{
    static const char *const check_args[] = {"-t", NULL};
    struct daemon_proc dp;
    int status = -1;

    ck_assert_int_eq(daemon_spawn(&dp, unknown_ini, NULL), 0);
    ck_assert_int_eq(daemon_wait(&dp, 10000, &status), 0);
    if (status != 78)
        daemon_dump_log(&dp);
    ck_assert_int_eq(status, 78);
    /* Found while validating, before anything is bound: FILE:LINE names it. */
    ck_assert(daemon_log_contains(
        &dp, "upechod.ini:6: [server] user: \"upechod-no-such-user\": no such user"));
    ck_assert(!daemon_log_contains(&dp, "listening on"));
    ck_assert(!daemon_log_contains(&dp, " ready\n"));
    daemon_stop(&dp);

    /* upechod -t says the same and exits 78 too. */
    ck_assert_int_eq(daemon_spawn(&dp, unknown_ini, check_args), 0);
    ck_assert_int_eq(daemon_wait(&dp, 10000, &status), 0);
    ck_assert_int_eq(status, 78);
    ck_assert(daemon_log_contains(
        &dp, "upechod.ini:6: [server] user: \"upechod-no-such-user\": no such user"));
    ck_assert(!daemon_log_contains(&dp, "configuration OK"));
    ck_assert(!daemon_log_contains(&dp, " ready\n"));
    daemon_stop(&dp);
}
END_TEST

/* Started as root with no user to become: it serves, but says so. */
START_TEST(test_root_warned)
{
    struct daemon_proc dp;

    if (geteuid() != 0)
        return;
    start_or_fail(&dp, INI_TCP4_ONLY);
    ck_assert(daemon_log_contains(&dp, "warning: running as root: [server] user is empty"));
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

static Suite *
privs_suite(void)
{
    Suite *s = suite_create("privs");
    TCase *tc = tcase_create("privs");

    tcase_add_test(tc, test_runs_as_nobody);
    tcase_add_test(tc, test_unknown_user);
    tcase_add_test(tc, test_root_warned);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return check_main(privs_suite(), CK_ENV);
}
