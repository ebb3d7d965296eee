/* test-systemd.c: the real daemon under a stand-in service manager: notify and activation. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check-helpers.h"
#include "check-main.h"
#include "harness.h"

/* Bound on waiting for READY=1: the ASan build starts slowly on a busy machine. */
#define READY_TIMEOUT_MS 10000
#define MSG_TIMEOUT_MS 5000

static const char serve_all_ini[] = INI_ALL "path = @DIR@/upechod.sock\n";

static const char tcp_only_ini[] = INI_TCP4_ONLY;

/* Periodic messages that may come at any time: a bare status line or a watchdog ping. */
static int
is_periodic(const char *msg)
{
    return strcmp(msg, "WATCHDOG=1") == 0 ||
           (strncmp(msg, "STATUS=", 7) == 0 && strchr(msg, '\n') == NULL);
}

/*
 * Wait for the next message that is not periodic, check that pid sent it
 * and that it begins with prefix; the whole message goes to out.
 */
static void
manager_expect(struct manager *m, pid_t pid, const char *prefix, char *out, size_t size,
               int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    pid_t from;
    ssize_t n;

    for (;;) {
        n = manager_recv_or_fail(m, out, size, &from, deadline - now_ms());
        ck_assert_msg(n >= 0, "no '%s' from the daemon within %d ms", prefix, timeout_ms);
        ck_assert_msg(from == pid, "'%s' came from pid %ld, not the daemon's %ld", out, (long)from,
                      (long)pid);
        if (!is_periodic(out))
            break;
    }
    ck_assert_msg(strncmp(out, prefix, strlen(prefix)) == 0, "got '%s', expected '%s...'", out,
                  prefix);
}

/* Send text on a connected socket and expect its uppercase back. */
static void
check_echo(int fd, const char *what)
{
    static const char sent[] = "systemd says hello, Upechod!";
    static const char want[] = "SYSTEMD SAYS HELLO, UPECHOD!";
    char got[sizeof(sent)];
    ssize_t n;

    ck_assert_msg(fd >= 0, "%s: cannot connect: %s", what, strerror(-fd));
    ck_assert_int_eq(write_all(fd, sent, sizeof(sent) - 1), 0);
    n = read_exact(fd, got, sizeof(sent) - 1, 5000);
    ck_assert_msg(n == (ssize_t)sizeof(sent) - 1, "%s: read %zd", what, n);
    ck_assert_msg(memcmp(got, want, sizeof(sent) - 1) == 0, "%s: wrong echo", what);
    close(fd);
}

static void
check_echo_all(int tcp_port, int udp_port, const char *unix_path)
{
    if (tcp_port > 0)
        check_echo(tcp_connect(AF_INET, tcp_port), "tcp");
    if (udp_port > 0)
        check_echo(udp_socket_for(udp_port), "udp");
    if (unix_path != NULL)
        check_echo(unix_connect(unix_path), "unix");
}

static void
spawn(struct daemon_proc *dp, const char *ini)
{
    int r = daemon_spawn(dp, ini, NULL);

    ck_assert_msg(r == 0, "daemon_spawn: %s", strerror(-r));
}

static void
stop_expect_stopping(struct manager *m, struct daemon_proc *dp)
{
    char msg[4096];
    int status = -1;

    ck_assert_int_eq(daemon_signal(dp, SIGTERM), 0);
    manager_expect(m, dp->dp_pid, "STOPPING=1", msg, sizeof(msg), MSG_TIMEOUT_MS);
    ck_assert_str_eq(msg, "STOPPING=1");
    ck_assert_int_eq(daemon_wait(dp, HARNESS_STOP_TIMEOUT_MS, &status), 0);
    ck_assert_int_eq(status, 0);
}

/*
 * READY=1 means every listener is bound: the first thing done on receiving
 * it is to connect, and that must work on each transport.
 */
START_TEST(test_ready_after_bind)
{
    struct daemon_proc dp;
    struct manager m;
    char msg[4096];

    manager_open_or_fail(&m, false);
    spawn(&dp, serve_all_ini);
    manager_expect(&m, dp.dp_pid, "READY=1", msg, sizeof(msg), READY_TIMEOUT_MS);
    ck_assert_msg(daemon_scan_log(&dp), "READY=1 came before the log said ready");
    ck_assert_int_gt(dp.dp_tcp_port, 0);
    ck_assert_int_gt(dp.dp_udp_port, 0);
    ck_assert_str_ne(dp.dp_unix_path, "");
    check_echo_all(dp.dp_tcp_port, dp.dp_udp_port, dp.dp_unix_path);

    stop_expect_stopping(&m, &dp);
    daemon_stop(&dp);
    manager_close(&m);
}
END_TEST

/* SIGHUP: RELOADING=1 stamped with the time of the reload, then READY=1, and still serving. */
START_TEST(test_reload)
{
    struct daemon_proc dp;
    struct manager m;
    char msg[4096], *end;
    uint64_t before, after, stamp;
    const char *p;
    int tcp;

    manager_open_or_fail(&m, false);
    spawn(&dp, tcp_only_ini);
    manager_expect(&m, dp.dp_pid, "READY=1", msg, sizeof(msg), READY_TIMEOUT_MS);
    ck_assert_msg(daemon_scan_log(&dp), "READY=1 came before the log said ready");
    tcp = dp.dp_tcp_port;

    before = now_usec();
    ck_assert_int_eq(daemon_signal(&dp, SIGHUP), 0);
    manager_expect(&m, dp.dp_pid, "RELOADING=1\n", msg, sizeof(msg), MSG_TIMEOUT_MS);
    after = now_usec();
    p = strstr(msg, "\nMONOTONIC_USEC=");
    ck_assert_msg(p != NULL, "no MONOTONIC_USEC in '%s'", msg);
    stamp = strtoull(p + 16, &end, 10);
    ck_assert(*end == '\0' || *end == '\n');
    ck_assert_uint_ge(stamp, before);
    ck_assert_uint_le(stamp, after);
    manager_expect(&m, dp.dp_pid, "READY=1", msg, sizeof(msg), MSG_TIMEOUT_MS);
    check_echo_all(tcp, 0, NULL);

    /* A broken file is a failed reload, which still ends in READY=1: the old one runs on. */
    ck_assert_int_eq(daemon_write_config(&dp, "[tcp]\nlisten = not an address\n"), 0);
    ck_assert_int_eq(daemon_signal(&dp, SIGHUP), 0);
    manager_expect(&m, dp.dp_pid, "RELOADING=1\n", msg, sizeof(msg), MSG_TIMEOUT_MS);
    manager_expect(&m, dp.dp_pid, "READY=1", msg, sizeof(msg), MSG_TIMEOUT_MS);
    check_echo_all(tcp, 0, NULL);

    /* A new address that cannot be bound fails the reload whole, and STATUS= says so. */
    {
        char ini[256];
        int held, held_port = 0;

        held = tcp_listen_on(AF_INET, 0, &held_port);
        ck_assert_int_ge(held, 0);
        snprintf(ini, sizeof(ini), "[tcp]\nlisten = 127.0.0.1:%d\n[udp]\nenabled = no\n",
                 held_port);
        ck_assert_int_eq(daemon_write_config(&dp, ini), 0);
        ck_assert_int_eq(daemon_signal(&dp, SIGHUP), 0);
        manager_expect(&m, dp.dp_pid, "RELOADING=1\n", msg, sizeof(msg), MSG_TIMEOUT_MS);
        manager_expect(&m, dp.dp_pid, "READY=1", msg, sizeof(msg), MSG_TIMEOUT_MS);
        ck_assert_msg(strstr(msg, "STATUS=reload failed: cannot listen") != NULL,
                      "READY=1 without a failed STATUS=: '%s'", msg);
        check_echo_all(tcp, 0, NULL);
        close(held);
    }

    stop_expect_stopping(&m, &dp);
    daemon_stop(&dp);
    manager_close(&m);
}
END_TEST

/* Live figures reach systemctl status every few seconds, in English: "1 connection open". */
START_TEST(test_status)
{
    struct daemon_proc dp;
    struct manager m;
    char msg[4096], echo[4];
    long long deadline;
    pid_t from;
    int got = 0, fd;

    manager_open_or_fail(&m, false);
    spawn(&dp, tcp_only_ini);
    manager_expect(&m, dp.dp_pid, "READY=1", msg, sizeof(msg), READY_TIMEOUT_MS);
    ck_assert_msg(daemon_scan_log(&dp), "READY=1 came before the log said ready");
    fd = connect_or_fail(AF_INET, dp.dp_tcp_port);
    ck_assert_int_eq(write_all(fd, "one", 3), 0);
    ck_assert_int_eq(read_exact(fd, echo, 3, 5000), 3);
    deadline = now_ms() + 10000;
    while (!got && manager_recv_or_fail(&m, msg, sizeof(msg), &from, deadline - now_ms()) >= 0)
        got =
            strncmp(msg, "STATUS=", 7) == 0 && strstr(msg, "accepted") != NULL && from == dp.dp_pid;
    ck_assert_msg(got, "no STATUS= line with figures within 10 s of READY=1");
    ck_assert_msg(strstr(msg, " 1 connection open, 1 accepted, 3 bytes echoed") != NULL, "%s", msg);
    close(fd);

    stop_expect_stopping(&m, &dp);
    daemon_stop(&dp);
    manager_close(&m);
}
END_TEST

/*
 * WATCHDOG_USEC=1 s: pings every half period, 7 or 8 in 4 s.  A gap between
 * two arrivals holds this process's scheduling delays as well as the
 * daemon's, and on a loaded machine one ping can come late, so the
 * period is not asked of each gap.  Asked instead: the pings keep coming
 * at about that rate (once a period would send 4 at most, a busy loop hundreds),
 * and they never stop for two periods, which no healthy daemon does.
 */
START_TEST(test_watchdog)
{
    struct daemon_proc dp;
    struct manager m;
    char msg[4096];
    long long last, end, gap, max_gap = 0;
    pid_t from;
    int pings = 0;

    unsetenv("WATCHDOG_PID");
    ck_assert_int_eq(setenv("WATCHDOG_USEC", "1000000", 1), 0);
    manager_open_or_fail(&m, false);
    spawn(&dp, tcp_only_ini);
    unsetenv("WATCHDOG_USEC");
    manager_expect(&m, dp.dp_pid, "READY=1", msg, sizeof(msg), READY_TIMEOUT_MS);

    last = now_ms();
    end = last + 4000;
    while (now_ms() < end) {
        if (manager_recv_or_fail(&m, msg, sizeof(msg), &from, end - now_ms()) < 0)
            break;
        if (strcmp(msg, "WATCHDOG=1") != 0)
            continue;
        ck_assert_int_eq(from, dp.dp_pid);
        gap = now_ms() - last;
        if (gap > max_gap)
            max_gap = gap;
        last = now_ms();
        pings++;
    }
    fprintf(stderr, "systemd: %d pings in 4 s at a 1 s watchdog, at most %lld ms apart\n", pings,
            max_gap);
    ck_assert_msg(pings >= 5 && pings <= 12, "%d pings in 4 s at a 1 s watchdog", pings);
    ck_assert_msg(max_gap < 2000, "%lld ms between pings at a 1 s watchdog", max_gap);

    stop_expect_stopping(&m, &dp);
    daemon_stop(&dp);
    manager_close(&m);
}
END_TEST

/*
 * WATCHDOG_USEC=1 would make a zero-interval timer, a busy loop: the
 * interval is clamped to 10 ms, so a second brings about 100 pings.
 */
START_TEST(test_watchdog_tiny)
{
    struct daemon_proc dp;
    struct manager m;
    char msg[4096];
    long long end;
    pid_t from;
    int pings = 0;

    unsetenv("WATCHDOG_PID");
    ck_assert_int_eq(setenv("WATCHDOG_USEC", "1", 1), 0);
    manager_open_or_fail(&m, false);
    spawn(&dp, tcp_only_ini);
    unsetenv("WATCHDOG_USEC");
    manager_expect(&m, dp.dp_pid, "READY=1", msg, sizeof(msg), READY_TIMEOUT_MS);

    end = now_ms() + 1000;
    while (now_ms() < end) {
        if (manager_recv_or_fail(&m, msg, sizeof(msg), &from, end - now_ms()) < 0)
            break;
        if (strcmp(msg, "WATCHDOG=1") == 0)
            pings++;
    }
    fprintf(stderr, "systemd: %d pings in 1 s at WATCHDOG_USEC=1\n", pings);
    ck_assert_msg(pings >= 5 && pings <= 200, "%d pings in 1 s at WATCHDOG_USEC=1", pings);

    stop_expect_stopping(&m, &dp);
    daemon_stop(&dp);
    manager_close(&m);
}
END_TEST

/* A watchdog meant for another process (WATCHDOG_PID) is not ours to ping. */
START_TEST(test_watchdog_other_pid)
{
    struct daemon_proc dp;
    struct manager m;
    char msg[4096];
    long long end;
    pid_t from;

    ck_assert_int_eq(setenv("WATCHDOG_USEC", "200000", 1), 0);
    ck_assert_int_eq(setenv("WATCHDOG_PID", "1", 1), 0);
    manager_open_or_fail(&m, false);
    spawn(&dp, tcp_only_ini);
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    manager_expect(&m, dp.dp_pid, "READY=1", msg, sizeof(msg), READY_TIMEOUT_MS);

    end = now_ms() + 1000;
    while (manager_recv_or_fail(&m, msg, sizeof(msg), &from, end - now_ms()) >= 0)
        ck_assert_msg(strcmp(msg, "WATCHDOG=1") != 0, "pinged a watchdog of pid 1");

    stop_expect_stopping(&m, &dp);
    daemon_stop(&dp);
    manager_close(&m);
}
END_TEST

/* Inodes of the sockets pid has open. */
static size_t
proc_socket_inodes(pid_t pid, unsigned long *ino, size_t max)
{
    char dir[64], link[64];
    struct dirent *de;
    size_t n = 0;
    DIR *d;

    snprintf(dir, sizeof(dir), "/proc/%ld/fd", (long)pid);
    d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d)) != NULL && n < max) {
        ssize_t len;

        len = readlinkat(dirfd(d), de->d_name, link, sizeof(link) - 1);
        if (len <= 0)
            continue;
        link[len] = '\0';
        if (sscanf(link, "socket:[%lu]", &ino[n]) == 1)
            n++;
    }
    closedir(d);
    return n;
}

static int
inode_in(unsigned long inode, const unsigned long *ino, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ino[i] == inode)
            return 1;
    return 0;
}

/*
 * Local ports of the entries of /proc/net/FILE (tcp, tcp6, udp, udp6) that
 * belong to the inodes, counting only TCP listeners (state 0A) for tcp.
 */
static size_t
proc_inet_ports(const char *file, const unsigned long *ino, size_t nino, int *ports, size_t max)
{
    char path[64], line[512];
    size_t n = 0;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/net/%s", file);
    f = fopen(path, "re");
    if (f == NULL)
        return 0; /* no IPv6 here */
    while (fgets(line, sizeof(line), f) != NULL && n < max) {
        unsigned port, state;
        unsigned long inode;

        if (sscanf(line, " %*d: %*[0-9A-Fa-f]:%x %*s %x %*s %*s %*s %*d %*d %lu", &port, &state,
                   &inode) != 3)
            continue;
        if (!inode_in(inode, ino, nino) || (file[0] == 't' && state != 0x0A))
            continue;
        ports[n++] = (int)port;
    }
    fclose(f);
    return n;
}

/* Paths of the listening UNIX sockets among the inodes. */
static size_t
proc_unix_listeners(const unsigned long *ino, size_t nino, char paths[][108], size_t max)
{
    char line[512];
    size_t n = 0;
    FILE *f = fopen("/proc/net/unix", "re");

    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof(line), f) != NULL && n < max) {
        unsigned flags;
        unsigned long inode;
        int off = 0;

        if (sscanf(line, "%*s %*x %*x %x %*x %*x %lu %n", &flags, &inode, &off) != 2)
            continue;
        if (!inode_in(inode, ino, nino) || !(flags & 0x10000))
            continue;
        line[strcspn(line, "\n")] = '\0';
        snprintf(paths[n++], 108, "%s", off > 0 ? line + off : "");
    }
    fclose(f);
    return n;
}

/*
 * Start the daemon with ini under tests/activate, which binds the socket
 * specs (names, its -n argument, may be NULL) and executes upechod in its
 * own place, as a service manager would; wait for READY=1 and read the
 * ports activate bound from its report (0 where it bound none).
 */
static void
activated_start(struct manager *m, struct daemon_proc *dp, const char *ini, const char *names,
                const char *const *specs, size_t nspecs, int *tcp_port, int *udp_port)
{
    const char *activate = getenv("ACTIVATE");
    const char *upechod = getenv("UPECHOD");
    const char *argv[16];
    char msg[4096], report[256], line[256];
    pid_t parent = getpid();
    size_t argc = 0;
    int logfd;
    FILE *f;

    ck_assert_msg(activate != NULL && upechod != NULL, "ACTIVATE and UPECHOD must be set");
    ck_assert_uint_le(nspecs, 8);
    snprintf(dp->dp_dir, sizeof(dp->dp_dir), "%s", m->m_dir);
    snprintf(dp->dp_config, sizeof(dp->dp_config), "%s/upechod.ini", m->m_dir);
    snprintf(dp->dp_log, sizeof(dp->dp_log), "%s/upechod.log", m->m_dir);
    snprintf(report, sizeof(report), "%s/sockets", m->m_dir);
    ck_assert_int_eq(daemon_write_config(dp, ini), 0);
    logfd = open(dp->dp_log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    ck_assert_int_ge(logfd, 0);
    argv[argc++] = activate;
    argv[argc++] = "-r";
    argv[argc++] = report;
    if (names != NULL) {
        argv[argc++] = "-n";
        argv[argc++] = names;
    }
    for (size_t i = 0; i < nspecs; i++)
        argv[argc++] = specs[i];
    argv[argc++] = "--";
    argv[argc++] = upechod;
    argv[argc++] = "-c";
    argv[argc++] = dp->dp_config;
    argv[argc] = NULL;

    dp->dp_pid = fork();
    ck_assert_int_ge(dp->dp_pid, 0);
    if (dp->dp_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        dup2(logfd, STDOUT_FILENO);
        dup2(logfd, STDERR_FILENO);
        close_range(3, ~0U, 0);
        execv(activate, (char *const *)argv);
        _exit(127);
    }
    close(logfd);
    dp->dp_status = -1;

    manager_expect(m, dp->dp_pid, "READY=1", msg, sizeof(msg), READY_TIMEOUT_MS);
    *tcp_port = *udp_port = 0;
    f = fopen(report, "re");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        char *colon = strrchr(line, ':');

        if (strncmp(line, "tcp ", 4) == 0 && colon != NULL)
            *tcp_port = atoi(colon + 1);
        else if (strncmp(line, "udp ", 4) == 0 && colon != NULL)
            *udp_port = atoi(colon + 1);
    }
    fclose(f);
}

/*
 * Socket activation: TCP, UDP and UNIX sockets passed together through
 * tests/activate, which executes the daemon in its own place.  The
 * configuration names other addresses, two of them held busy here: the
 * daemon must serve exactly what it was given and bind none of them.
 */
START_TEST(test_socket_activation)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t slen = sizeof(sin);
    struct daemon_proc dp;
    struct manager m;
    char msg[4096], ini[1024], unix_spec[200], act_path[160], cfg_path[160];
    char unix_paths[8][108];
    const char *specs[3] = {"tcp:127.0.0.1:0", "udp:127.0.0.1:0", unix_spec};
    unsigned long ino[64];
    int ports[8], tcp_port = 0, udp_port = 0, busy_tcp, busy_udp, busy_tport, busy_uport;
    int status;
    size_t nino, n;
    struct stat st;

    memset(&dp, 0, sizeof(dp));

    /* Ports held by sockets without SO_REUSEADDR: binding them again fails. */
    busy_tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_eq(bind(busy_tcp, (struct sockaddr *)&sin, sizeof(sin)), 0);
    ck_assert_int_eq(getsockname(busy_tcp, (struct sockaddr *)&sin, &slen), 0);
    busy_tport = ntohs(sin.sin_port);
    busy_udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sin.sin_port = 0;
    ck_assert_int_eq(bind(busy_udp, (struct sockaddr *)&sin, sizeof(sin)), 0);
    slen = sizeof(sin);
    ck_assert_int_eq(getsockname(busy_udp, (struct sockaddr *)&sin, &slen), 0);
    busy_uport = ntohs(sin.sin_port);

    manager_open_or_fail(&m, false);
    snprintf(act_path, sizeof(act_path), "%s/activated.sock", m.m_dir);
    snprintf(cfg_path, sizeof(cfg_path), "%s/configured.sock", m.m_dir);
    snprintf(unix_spec, sizeof(unix_spec), "unix:%s", act_path);
    snprintf(ini, sizeof(ini),
             "[tcp]\nlisten = 127.0.0.1:%d\n[udp]\nlisten = 127.0.0.1:%d\n"
             "[unix]\nenabled = yes\npath = %s\n",
             busy_tport, busy_uport, cfg_path);
    activated_start(&m, &dp, ini, "tcp:udp:unix", specs, 3, &tcp_port, &udp_port);
    ck_assert_int_gt(tcp_port, 0);
    ck_assert_int_gt(udp_port, 0);
    check_echo_all(tcp_port, udp_port, act_path);

    /* What the daemon holds: exactly the three sockets it was given. */
    nino = proc_socket_inodes(dp.dp_pid, ino, sizeof(ino) / sizeof(ino[0]));
    n = proc_inet_ports("tcp", ino, nino, ports, 8);
    n += proc_inet_ports("tcp6", ino, nino, ports + n, 8 - n);
    ck_assert_msg(n == 1 && ports[0] == tcp_port, "%zu TCP listeners, first on %d", n,
                  n > 0 ? ports[0] : 0);
    n = proc_inet_ports("udp", ino, nino, ports, 8);
    n += proc_inet_ports("udp6", ino, nino, ports + n, 8 - n);
    ck_assert_msg(n == 1 && ports[0] == udp_port, "%zu UDP sockets, first on %d", n,
                  n > 0 ? ports[0] : 0);
    n = proc_unix_listeners(ino, nino, unix_paths, 8);
    ck_assert_msg(n == 1 && strcmp(unix_paths[0], act_path) == 0, "%zu UNIX listeners: %s", n,
                  n > 0 ? unix_paths[0] : "");
    ck_assert_msg(stat(cfg_path, &st) == -1 && errno == ENOENT, "%s was created", cfg_path);

    /* A reload keeps serving the passed sockets and still binds nothing. */
    ck_assert_int_eq(daemon_signal(&dp, SIGHUP), 0);
    manager_expect(&m, dp.dp_pid, "RELOADING=1\n", msg, sizeof(msg), MSG_TIMEOUT_MS);
    manager_expect(&m, dp.dp_pid, "READY=1", msg, sizeof(msg), MSG_TIMEOUT_MS);
    check_echo_all(tcp_port, udp_port, act_path);
    ck_assert_msg(stat(cfg_path, &st) == -1 && errno == ENOENT, "%s was created", cfg_path);

    ck_assert_int_eq(daemon_signal(&dp, SIGTERM), 0);
    manager_expect(&m, dp.dp_pid, "STOPPING=1", msg, sizeof(msg), MSG_TIMEOUT_MS);
    ck_assert_int_eq(daemon_wait(&dp, HARNESS_STOP_TIMEOUT_MS, &status), 0);
    ck_assert_int_eq(status, 0);
    /* The socket file is the manager's: it must outlive the service for the next start. */
    ck_assert_msg(stat(act_path, &st) == 0 && S_ISSOCK(st.st_mode), "%s was removed", act_path);

    manager_close(&m);
    close(busy_tcp);
    close(busy_udp);
}
END_TEST

/*
 * A wildcard UDP socket from the manager (ListenDatagram=0.0.0.0:P) must
 * answer from the address the client wrote to: a client that sent to
 * 127.0.0.2 and gets its answer from 127.0.0.1 (what routing picks for a
 * socket not told the destination) drops it if connected.
 */
START_TEST(test_activated_udp_wildcard)
{
    const char *specs[1] = {"udp:0.0.0.0:0"};
    struct sockaddr_in me = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_in to = {.sin_family = AF_INET}, from;
    socklen_t flen = sizeof(from);
    struct daemon_proc dp;
    struct manager m;
    char msg[4096], got[64], src[INET_ADDRSTRLEN];
    struct pollfd pfd;
    int status, fd, tcp_port, udp_port;
    ssize_t r;

    memset(&dp, 0, sizeof(dp));
    manager_open_or_fail(&m, false);
    activated_start(&m, &dp, INI_UDP4_ONLY, NULL, specs, 1, &tcp_port, &udp_port);
    ck_assert_int_gt(udp_port, 0);

    /* From 127.0.0.1, unconnected, so that a reply from any source is seen. */
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&me, sizeof(me)), 0);
    ck_assert_int_eq(inet_pton(AF_INET, "127.0.0.2", &to.sin_addr), 1);
    to.sin_port = htons((uint16_t)udp_port);
    ck_assert_int_eq(sendto(fd, "to two", 6, 0, (struct sockaddr *)&to, sizeof(to)), 6);
    pfd = (struct pollfd){.fd = fd, .events = POLLIN};
    ck_assert_msg(poll(&pfd, 1, MSG_TIMEOUT_MS) == 1, "no reply from the activated socket");
    r = recvfrom(fd, got, sizeof(got), 0, (struct sockaddr *)&from, &flen);
    ck_assert_int_eq(r, 6);
    ck_assert_mem_eq(got, "TO TWO", 6);
    inet_ntop(AF_INET, &from.sin_addr, src, sizeof(src));
    ck_assert_msg(from.sin_addr.s_addr == to.sin_addr.s_addr && from.sin_port == to.sin_port,
                  "sent to 127.0.0.2:%d, answered from %s:%d", udp_port, src, ntohs(from.sin_port));
    close(fd);

    ck_assert_int_eq(daemon_signal(&dp, SIGTERM), 0);
    manager_expect(&m, dp.dp_pid, "STOPPING=1", msg, sizeof(msg), MSG_TIMEOUT_MS);
    ck_assert_int_eq(daemon_wait(&dp, HARNESS_STOP_TIMEOUT_MS, &status), 0);
    ck_assert_int_eq(status, 0);
    manager_close(&m);
}
END_TEST

static Suite *
systemd_suite(void)
{
    Suite *s = suite_create("systemd");
    TCase *tc = tcase_create("notify");
    TCase *ta = tcase_create("activation");

    tcase_add_unchecked_fixture(tc, scratch_setup, scratch_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_ready_after_bind);
    tcase_add_test(tc, test_reload);
    tcase_add_test(tc, test_status);
    tcase_add_test(tc, test_watchdog);
    tcase_add_test(tc, test_watchdog_tiny);
    tcase_add_test(tc, test_watchdog_other_pid);
    suite_add_tcase(s, tc);
    tcase_add_unchecked_fixture(ta, scratch_setup, scratch_teardown);
    tcase_set_timeout(ta, 60);
    tcase_add_test(ta, test_socket_activation);
    tcase_add_test(ta, test_activated_udp_wildcard);
    suite_add_tcase(s, ta);
    return s;
}

int
main(void)
{
    return check_main(systemd_suite(), CK_NORMAL);
}
