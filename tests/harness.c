/* harness.c: run the real upechod in a private temp dir and talk to it over loopback. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define HARNESS_MAX_ARGS 32

/* Open-file limit (soft and hard) for the next daemon started; 0 = inherit ours. */
static unsigned long harness_child_nofile;

/* See scratch_setup(). */
static char harness_scratch[64];

long long
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t
now_usec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void
harness_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

static int
harness_rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    remove(path);
    return 0;
}

static void
harness_rm_tree(const char *dir)
{
    if (dir[0] != '\0')
        nftw(dir, harness_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * check's fork mode ends a failed test with _exit(), so neither atexit()
 * nor a teardown ever runs; a test killed by its timeout runs nothing at
 * all; and check then kills the test's whole process group.  The daemon
 * dies with us (PR_SET_PDEATHSIG); its temp dir is left to a small shell in
 * its own session that waits for the end of a pipe only we hold and then
 * removes the dir, however we ended.
 */
static int
harness_reaper_start(struct daemon_proc *dp)
{
    static const char script[] = "read -r _; rm -rf -- \"$1\"";
    int fds[2], nullfd, r;

    if (pipe2(fds, O_CLOEXEC) == -1)
        return -errno;
    nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (nullfd == -1) {
        r = -errno;
        close(fds[0]);
        close(fds[1]);
        return r;
    }
    dp->dp_reaper_pid = fork();
    if (dp->dp_reaper_pid == 0) {
        /* Out of our process group: check kills the group of a finished test. */
        setsid();
        dup2(fds[0], STDIN_FILENO);
        dup2(nullfd, STDOUT_FILENO);
        dup2(nullfd, STDERR_FILENO);
        /* Hold none of the test's sockets: a client close must reach the daemon. */
        close_range(3, ~0U, 0);
        execl("/bin/sh", "sh", "-c", script, "sh", dp->dp_dir, (char *)NULL);
        _exit(127);
    }
    r = dp->dp_reaper_pid == -1 ? -errno : 0;
    close(fds[0]);
    close(nullfd);
    if (r < 0) {
        close(fds[1]);
        return r;
    }
    dp->dp_reaper_fd = fds[1];
    return 0;
}

/* Release the reaper (its rm finds nothing left) and collect it. */
static void
harness_reaper_stop(struct daemon_proc *dp)
{
    long long deadline = now_ms() + 2000;

    if (dp->dp_reaper_fd >= 0)
        close(dp->dp_reaper_fd);
    dp->dp_reaper_fd = -1;
    if (dp->dp_reaper_pid <= 0)
        return;
    while (waitpid(dp->dp_reaper_pid, NULL, WNOHANG) == 0) {
        if (now_ms() > deadline) {
            kill(dp->dp_reaper_pid, SIGKILL);
            waitpid(dp->dp_reaper_pid, NULL, 0);
            break;
        }
        harness_sleep_ms(1);
    }
    dp->dp_reaper_pid = -1;
}

/* The whole file, NUL-terminated, or NULL. */
static char *
harness_slurp(const char *path, size_t *lenp)
{
    FILE *f = fopen(path, "re");
    char *buf = NULL;
    size_t len = 0, cap = 0;

    if (f == NULL)
        return NULL;
    for (;;) {
        if (cap - len < 4096) {
            char *nbuf = realloc(buf, cap + 65536);
            if (nbuf == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nbuf;
            cap += 65536;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
    }
    fclose(f);
    buf[len] = '\0';
    if (lenp != NULL)
        *lenp = len;
    return buf;
}

/*
 * Write text to path with every "@DIR@" replaced by dir.  With
 * UPECHOD_WORKERS set (the workers2 test setup), a config that does not
 * choose its own number of workers gets `workers = N`, after everything
 * else so that line numbers in expected messages do not move.
 */
static int
harness_write_config(const char *path, const char *text, const char *dir)
{
    static const char placeholder[] = "@DIR@";
    const char *workers = getenv("UPECHOD_WORKERS");
    FILE *f = fopen(path, "we");
    const char *p = text, *q;

    if (f == NULL)
        return -errno;
    while ((q = strstr(p, placeholder)) != NULL) {
        fwrite(p, 1, (size_t)(q - p), f);
        fputs(dir, f);
        p = q + sizeof(placeholder) - 1;
    }
    fputs(p, f);
    if (workers != NULL && workers[0] != '\0' && strstr(text, "workers") == NULL)
        fprintf(f, "%s[server]\nworkers = %s\n",
                text[0] != '\0' && text[strlen(text) - 1] != '\n' ? "\n" : "", workers);
    if (fclose(f) == EOF)
        return -errno;
    return 0;
}

int
daemon_write_config(const struct daemon_proc *dp, const char *ini_text)
{
    char tmp[sizeof(dp->dp_config) + 8];
    int r;

    snprintf(tmp, sizeof(tmp), "%s.new", dp->dp_config);
    r = harness_write_config(tmp, ini_text, dp->dp_dir);
    if (r == 0 && rename(tmp, dp->dp_config) == -1)
        r = -errno;
    return r;
}

static int
harness_status(int wstatus)
{
    if (WIFEXITED(wstatus))
        return WEXITSTATUS(wstatus);
    if (WIFSIGNALED(wstatus))
        return 128 + WTERMSIG(wstatus);
    return -1;
}

int
daemon_spawn(struct daemon_proc *dp, const char *ini_text, const char *const *args)
{
    const char *exe = getenv("UPECHOD");
    const char *tmp = getenv("TMPDIR");
    const char *argv[HARNESS_MAX_ARGS + 4];
    size_t argc = 0;
    pid_t parent = getpid();
    int logfd, nullfd, r;

    memset(dp, 0, sizeof(*dp));
    dp->dp_pid = -1;
    dp->dp_status = -1;
    dp->dp_reaper_pid = -1;
    dp->dp_reaper_fd = -1;
    if (exe == NULL || exe[0] == '\0') {
        fprintf(stderr, "harness: UPECHOD is not set to the daemon's path\n");
        return -ENOENT;
    }
    if (tmp == NULL || tmp[0] == '\0')
        tmp = "/tmp";
    r = snprintf(dp->dp_dir, sizeof(dp->dp_dir), "%s/upechod-test-XXXXXX", tmp);
    if (r < 0 || (size_t)r >= sizeof(dp->dp_dir)) {
        dp->dp_dir[0] = '\0';
        return -ENAMETOOLONG;
    }
    if (mkdtemp(dp->dp_dir) == NULL) {
        r = -errno;
        dp->dp_dir[0] = '\0';
        return r;
    }
    r = harness_reaper_start(dp);
    if (r < 0)
        return r;
    snprintf(dp->dp_config, sizeof(dp->dp_config), "%s/upechod.ini", dp->dp_dir);
    snprintf(dp->dp_log, sizeof(dp->dp_log), "%s/upechod.log", dp->dp_dir);

    argv[argc++] = exe;
    if (ini_text != NULL) {
        r = harness_write_config(dp->dp_config, ini_text, dp->dp_dir);
        if (r < 0)
            return r;
        argv[argc++] = "-c";
        argv[argc++] = dp->dp_config;
    }
    for (size_t i = 0; args != NULL && args[i] != NULL; i++) {
        if (i == HARNESS_MAX_ARGS)
            return -E2BIG;
        argv[argc++] = args[i];
    }
    argv[argc] = NULL;

    /* A file, not a pipe: a chatty daemon must never block on a full pipe. */
    logfd = open(dp->dp_log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (logfd == -1)
        return -errno;
    nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (nullfd == -1) {
        r = -errno;
        close(logfd);
        return r;
    }

    dp->dp_pid = fork();
    if (dp->dp_pid == 0) {
        sigset_t none;

        /* Die with the test, even when it is killed by check's timeout. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        dup2(nullfd, STDIN_FILENO);
        dup2(logfd, STDOUT_FILENO);
        dup2(logfd, STDERR_FILENO);
        close_range(3, ~0U, 0);
        if (harness_child_nofile > 0) {
            struct rlimit rl = {harness_child_nofile, harness_child_nofile};

            if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
                _exit(126);
        }
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    r = dp->dp_pid == -1 ? -errno : 0;
    close(logfd);
    close(nullfd);
    return r;
}

/* "127.0.0.1:P" or "[::1]:P" to a family and port; 0 when it is neither. */
static int
harness_parse_inet(const char *s, size_t len, int *family)
{
    char text[128];
    const char *colon;
    char *end;
    long port;

    if (len >= sizeof(text))
        return 0;
    memcpy(text, s, len);
    text[len] = '\0';
    if (text[0] == '[') {
        colon = strstr(text, "]:");
        if (colon == NULL)
            return 0;
        colon++;
        *family = AF_INET6;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL)
            return 0;
        *family = AF_INET;
    }
    port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port <= 0 || port > 65535)
        return 0;
    return (int)port;
}

/* Record the port of a "serving metrics on http://127.0.0.1:P/metrics" line; the last one wins. */
static void
harness_parse_metrics(struct daemon_proc *dp, const char *line, size_t len)
{
    static const char marker[] = "serving metrics on http://127.0.0.1:";
    const char *p = memmem(line, len, marker, sizeof(marker) - 1);

    if (p != NULL)
        dp->dp_metrics_port = atoi(p + sizeof(marker) - 1);
}

/* Record one "... listening on PROTO ADDRESS" line. */
static void
harness_parse_listen(struct daemon_proc *dp, const char *line, size_t len)
{
    static const char marker[] = "listening on ";
    const char *end = line + len;
    const char *p = memmem(line, len, marker, sizeof(marker) - 1);
    int family = 0, port;
    size_t n;

    if (p == NULL)
        return;
    p += sizeof(marker) - 1;
    while (end > p && (end[-1] == ' ' || end[-1] == '\r'))
        end--;
    if ((size_t)(end - p) > 5 && strncmp(p, "unix ", 5) == 0) {
        n = (size_t)(end - p - 5);
        if (dp->dp_unix_path[0] == '\0' && n < sizeof(dp->dp_unix_path)) {
            memcpy(dp->dp_unix_path, p + 5, n);
            dp->dp_unix_path[n] = '\0';
        }
        return;
    }
    if ((size_t)(end - p) <= 4 || (strncmp(p, "tcp ", 4) != 0 && strncmp(p, "udp ", 4) != 0))
        return;
    bool tcp = p[0] == 't';
    const char *a = p + 4, *ae = a;
    while (ae < end && *ae != ' ')
        ae++;
    port = harness_parse_inet(a, (size_t)(ae - a), &family);
    if (port == 0)
        return;
    int *slot = tcp ? (family == AF_INET6 ? &dp->dp_tcp6_port : &dp->dp_tcp_port)
                    : (family == AF_INET6 ? &dp->dp_udp6_port : &dp->dp_udp_port);
    if (*slot == 0)
        *slot = port;
}

/*
 * Parse the log; true once it holds a line ending in "ready", and then the
 * listening lines have filled in dp's ports and unix path.
 */
bool
daemon_scan_log(struct daemon_proc *dp)
{
    char *log = harness_slurp(dp->dp_log, NULL);
    bool ready = false;

    if (log == NULL)
        return false;
    for (char *line = log, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        size_t len = (size_t)(nl - line);
        while (len > 0 && line[len - 1] == '\r')
            len--;
        if (len >= 5 && memcmp(line + len - 5, "ready", 5) == 0) {
            ready = true;
            break;
        }
    }
    if (ready) {
        for (char *line = log, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
            harness_parse_listen(dp, line, (size_t)(nl - line));
            harness_parse_metrics(dp, line, (size_t)(nl - line));
        }
    }
    free(log);
    return ready;
}

/* Reap the daemon if it has exited.  True when it has. */
static bool
harness_reap(struct daemon_proc *dp, bool block)
{
    int wstatus;
    pid_t r;

    if (dp->dp_pid <= 0)
        return true;
    do
        r = waitpid(dp->dp_pid, &wstatus, block ? 0 : WNOHANG);
    while (r == -1 && errno == EINTR);
    if (r == 0)
        return false;
    dp->dp_status = r == dp->dp_pid ? harness_status(wstatus) : -1;
    dp->dp_pid = -1;
    return true;
}

int
daemon_start_args(struct daemon_proc *dp, const char *ini_text, const char *const *args)
{
    long long deadline;
    int r = daemon_spawn(dp, ini_text, args);

    if (r < 0)
        return r;
    deadline = now_ms() + HARNESS_READY_TIMEOUT_MS;
    for (;;) {
        if (daemon_scan_log(dp))
            return 0;
        if (harness_reap(dp, false)) {
            fprintf(stderr, "harness: upechod exited with status %d before it was ready:\n",
                    dp->dp_status);
            daemon_dump_log(dp);
            return -ECHILD;
        }
        if (now_ms() > deadline) {
            fprintf(stderr, "harness: upechod not ready after %d ms:\n", HARNESS_READY_TIMEOUT_MS);
            daemon_dump_log(dp);
            return -ETIMEDOUT;
        }
        harness_sleep_ms(5);
    }
}

int
daemon_start(struct daemon_proc *dp, const char *ini_text)
{
    return daemon_start_args(dp, ini_text, NULL);
}

int
daemon_start_nofile(struct daemon_proc *dp, const char *ini_text, unsigned long nofile)
{
    int r;

    harness_child_nofile = nofile;
    r = daemon_start_args(dp, ini_text, NULL);
    harness_child_nofile = 0;
    return r;
}

int
daemon_signal(struct daemon_proc *dp, int sig)
{
    if (dp->dp_pid <= 0)
        return -ESRCH;
    return kill(dp->dp_pid, sig) == -1 ? -errno : 0;
}

int
daemon_wait(struct daemon_proc *dp, int timeout_ms, int *status)
{
    long long deadline = now_ms() + timeout_ms;

    while (!harness_reap(dp, false)) {
        if (now_ms() > deadline)
            return -ETIMEDOUT;
        harness_sleep_ms(2);
    }
    if (status != NULL)
        *status = dp->dp_status;
    return 0;
}

int
daemon_stop(struct daemon_proc *dp)
{
    if (dp->dp_pid > 0) {
        kill(dp->dp_pid, SIGTERM);
        if (daemon_wait(dp, HARNESS_STOP_TIMEOUT_MS, NULL) < 0) {
            fprintf(stderr, "harness: upechod ignored SIGTERM for %d ms, killing it\n",
                    HARNESS_STOP_TIMEOUT_MS);
            kill(dp->dp_pid, SIGKILL);
            harness_reap(dp, true);
        }
    }
    harness_rm_tree(dp->dp_dir);
    dp->dp_dir[0] = '\0';
    harness_reaper_stop(dp);
    return dp->dp_status;
}

bool
daemon_log_contains(const struct daemon_proc *dp, const char *needle)
{
    size_t len;
    char *log = harness_slurp(dp->dp_log, &len);
    bool found;

    if (log == NULL)
        return false;
    found = memmem(log, len, needle, strlen(needle)) != NULL;
    free(log);
    return found;
}

int
daemon_log_count(const struct daemon_proc *dp, const char *needle)
{
    size_t len, nlen = strlen(needle);
    char *log = harness_slurp(dp->dp_log, &len);
    const char *p, *end;
    int count = 0;

    if (log == NULL)
        return errno != 0 ? -errno : -EIO;
    if (nlen == 0) {
        free(log);
        return -EINVAL;
    }
    end = log + len;
    for (p = log; (p = memmem(p, (size_t)(end - p), needle, nlen)) != NULL; p += nlen)
        count++;
    free(log);
    return count;
}

void
daemon_dump_log(const struct daemon_proc *dp)
{
    size_t len;
    char *log = harness_slurp(dp->dp_log, &len);

    if (log == NULL)
        return;
    fprintf(stderr, "---- %s ----\n", dp->dp_log);
    fwrite(log, 1, len, stderr);
    fprintf(stderr, "---- end ----\n");
    free(log);
}

long
daemon_rss_kib(const struct daemon_proc *dp)
{
    char path[64], line[256];
    long kib = -ENOENT;
    FILE *f;

    if (dp->dp_pid <= 0)
        return -ESRCH;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)dp->dp_pid);
    f = fopen(path, "re");
    if (f == NULL)
        return -errno;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    }
    fclose(f);
    return kib;
}

long long
daemon_cpu_ticks(const struct daemon_proc *dp)
{
    char path[64], buf[1024];
    unsigned long long utime, stime;
    const char *p;
    size_t n;
    FILE *f;

    if (dp->dp_pid <= 0)
        return -ESRCH;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)dp->dp_pid);
    f = fopen(path, "re");
    if (f == NULL)
        return -errno;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* comm may hold spaces and parentheses; the fields start after the last ')'. */
    p = strrchr(buf, ')');
    if (p == NULL)
        return -EINVAL;
    /* state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) !=
        2)
        return -EINVAL;
    return (long long)(utime + stime);
}

int
daemon_nfds(const struct daemon_proc *dp)
{
    char path[64];
    struct dirent *de;
    int n = 0;
    DIR *d;

    if (dp->dp_pid <= 0)
        return -ESRCH;
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)dp->dp_pid);
    d = opendir(path);
    if (d == NULL)
        return -errno;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

int
daemon_wait_nfds(const struct daemon_proc *dp, int want, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    int n;

    while ((n = daemon_nfds(dp)) != want && n >= 0 && now_ms() < deadline)
        harness_sleep_ms(10);
    return n;
}

static socklen_t
harness_loopback(int family, int port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_addr = in6addr_loopback;
        sin6->sin6_port = htons((uint16_t)port);
        return sizeof(*sin6);
    }
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin->sin_port = htons((uint16_t)port);
    return sizeof(*sin);
}

int
set_nonblocking(int fd, bool on)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl == -1)
        return -errno;
    fl = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
    return fcntl(fd, F_SETFL, fl) == -1 ? -errno : 0;
}

/* Wait for a non-blocking connect() to finish; the fd is left blocking. */
static int
harness_connect_fd(int fd, const struct sockaddr *sa, socklen_t len)
{
    long long deadline = now_ms() + HARNESS_CONNECT_TIMEOUT_MS;
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    int err = 0;
    socklen_t elen = sizeof(err);

    for (;;) {
        if (connect(fd, sa, len) == 0)
            return set_nonblocking(fd, false);
        if (errno == EINPROGRESS)
            break;
        /* An AF_UNIX listener with a full backlog says EAGAIN: try again shortly. */
        if (errno != EAGAIN && errno != EINTR)
            return -errno;
        if (now_ms() > deadline)
            return -ETIMEDOUT;
        harness_sleep_ms(5);
    }
    for (;;) {
        long long left = deadline - now_ms();
        int r;

        if (left <= 0)
            return -ETIMEDOUT;
        r = poll(&pfd, 1, (int)left);
        if (r == -1 && errno == EINTR)
            continue;
        if (r == -1)
            return -errno;
        if (r == 1)
            break;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == -1)
        return -errno;
    if (err != 0)
        return -err;
    return set_nonblocking(fd, false);
}

int
tcp_connect(int family, int port)
{
    struct sockaddr_storage ss;
    socklen_t len = harness_loopback(family, port, &ss);
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int r;

    if (fd == -1)
        return -errno;
    r = harness_connect_fd(fd, (struct sockaddr *)&ss, len);
    if (r < 0) {
        close(fd);
        return r;
    }
    return fd;
}

int
unix_connect(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd, r;

    if (strlen(path) >= sizeof(sun.sun_path))
        return -ENAMETOOLONG;
    strcpy(sun.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd == -1)
        return -errno;
    r = harness_connect_fd(fd, (struct sockaddr *)&sun, sizeof(sun));
    if (r < 0) {
        close(fd);
        return r;
    }
    return fd;
}

int
udp_socket_family(int family, int port)
{
    struct sockaddr_storage ss;
    socklen_t len = harness_loopback(family, port, &ss);
    int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int r;

    if (fd == -1)
        return -errno;
    if (connect(fd, (struct sockaddr *)&ss, len) == -1) {
        r = -errno;
        close(fd);
        return r;
    }
    return fd;
}

int
udp_socket_for(int port)
{
    return udp_socket_family(AF_INET, port);
}

int
tcp_listen_on(int family, int port, int *bound)
{
    struct sockaddr_storage ss;
    socklen_t len = harness_loopback(family, port, &ss);
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int r;

    if (fd == -1)
        return -errno;
    if (bind(fd, (struct sockaddr *)&ss, len) == -1 || listen(fd, 16) == -1 ||
        getsockname(fd, (struct sockaddr *)&ss, &len) == -1) {
        r = -errno;
        close(fd);
        return r;
    }
    *bound = family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

bool
ipv6_available(void)
{
    struct sockaddr_storage ss;
    socklen_t len = harness_loopback(AF_INET6, 0, &ss);
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok;

    if (fd == -1)
        return false;
    ok = bind(fd, (struct sockaddr *)&ss, len) == 0;
    close(fd);
    return ok;
}

/* Wait up to timeout_ms for events on fd: 1, 0 on timeout, or -errno. */
static int
harness_poll1(int fd, short events, long long timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    int r;

    if (timeout_ms < 0)
        timeout_ms = 0;
    do
        r = poll(&pfd, 1, (int)timeout_ms);
    while (r == -1 && errno == EINTR);
    return r == -1 ? -errno : r;
}

int
write_all(int fd, const void *buf, size_t n)
{
    const unsigned char *p = buf;

    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w == -1 && errno == ENOTSOCK)
            w = write(fd, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w == -1 && errno == EINTR)
            continue;
        if (w == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* No progress for this long means the peer stopped reading. */
            int r = harness_poll1(fd, POLLOUT, 10000);
            if (r < 0)
                return r;
            if (r == 0)
                return -ETIMEDOUT;
            continue;
        }
        return w == -1 ? -errno : -EIO;
    }
    return 0;
}

ssize_t
send_until_stall(int fd, const void *ring, size_t ring_len, size_t cap, int stall_ms)
{
    const unsigned char *p = ring;
    size_t nsent = 0;

    while (nsent < cap) {
        size_t off = nsent % ring_len;
        size_t n = ring_len - off < cap - nsent ? ring_len - off : cap - nsent;
        ssize_t w = send(fd, p + off, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        int r;

        if (w > 0) {
            nsent += (size_t)w;
            continue;
        }
        if (w == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            return w == 0 ? -EIO : -errno;
        r = harness_poll1(fd, POLLOUT, stall_ms);
        if (r < 0)
            return r;
        if (r == 0)
            break;
    }
    return (ssize_t)nsent;
}

ssize_t
read_exact(int fd, void *buf, size_t n, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    unsigned char *p = buf;
    size_t got = 0;

    while (got < n) {
        int r = harness_poll1(fd, POLLIN, deadline - now_ms());
        if (r < 0)
            return r;
        if (r == 0)
            return -ETIMEDOUT;
        ssize_t rd = read(fd, p + got, n - got);
        if (rd == 0)
            break;
        if (rd == -1) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return -errno;
        }
        got += (size_t)rd;
    }
    return (ssize_t)got;
}

ssize_t
http_request(int port, const char *request, char *buf, size_t size, int timeout_ms)
{
    int fd = tcp_connect(AF_INET, port);
    ssize_t n;

    if (fd < 0)
        return fd;
    if ((n = write_all(fd, request, strlen(request))) == 0)
        n = read_exact(fd, buf, size - 1, timeout_ms);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return n;
}

int
http_get(int port, const char *path, char *buf, size_t size, const char **body)
{
    char req[512];
    const char *b;
    ssize_t n;

    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
             path);
    if ((n = http_request(port, req, buf, size, 10000)) < 0)
        return (int)n;
    b = strstr(buf, "\r\n\r\n");
    *body = b != NULL ? b + 4 : buf + n;
    if (strncmp(buf, "HTTP/1.1 ", 9) != 0)
        return -EPROTO;
    return atoi(buf + 9);
}

int
read_eof(int fd, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    unsigned char c;

    for (;;) {
        int r = harness_poll1(fd, POLLIN, deadline - now_ms());
        if (r < 0)
            return r;
        if (r == 0)
            return -ETIMEDOUT;
        ssize_t rd = read(fd, &c, 1);
        if (rd == 0)
            return 0;
        if (rd > 0)
            return -EPROTO;
        if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
    }
}

bool
under_asan(void)
{
    const char *e = getenv("UPECHOD_ASAN");

    return e != NULL && e[0] != '\0' && strcmp(e, "0") != 0;
}

int
raise_nofile(unsigned long want)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
        return -errno;
    if (rl.rlim_cur >= want)
        return 0;
    rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
        return -errno;
    return rl.rlim_cur >= want ? 0 : -EMFILE;
}

/* splitmix64: tiny, fast, and the same bytes on every run. */
void
fill_pattern(void *buf, size_t n, unsigned long long seed)
{
    unsigned char *p = buf;
    unsigned long long x = seed;

    for (size_t i = 0; i < n; i += 8) {
        unsigned long long z = (x += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        for (size_t j = 0; j < 8 && i + j < n; j++)
            p[i + j] = (unsigned char)(z >> (8 * j));
    }
}

void
ref_upper(void *dst, const void *src, size_t n)
{
    const unsigned char *s = src;
    unsigned char *d = dst;

    for (size_t i = 0; i < n; i++)
        d[i] = s[i] >= 'a' && s[i] <= 'z' ? (unsigned char)(s[i] - 'a' + 'A') : s[i];
}

long
ref_mismatch(const void *reply, const void *sent, size_t n)
{
    const unsigned char *r = reply, *s = sent;

    for (size_t i = 0; i < n; i++) {
        unsigned char want = s[i] >= 'a' && s[i] <= 'z' ? (unsigned char)(s[i] - 'a' + 'A') : s[i];
        if (r[i] != want)
            return (long)i;
    }
    return -1;
}

void
scratch_setup(void)
{
    snprintf(harness_scratch, sizeof(harness_scratch), "/tmp/upechod-scratch-XXXXXX");
    if (mkdtemp(harness_scratch) == NULL) {
        perror("mkdtemp");
        abort();
    }
}

void
scratch_teardown(void)
{
    harness_rm_tree(harness_scratch);
    harness_scratch[0] = '\0';
}

const char *
scratch_dir(void)
{
    return harness_scratch;
}

int
manager_open(struct manager *m, bool abstract)
{
    static unsigned counter;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    socklen_t len = sizeof(sun);
    int one = 1, r;

    memset(m, 0, sizeof(*m));
    m->m_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (m->m_fd == -1)
        return -errno;
    if (abstract) {
        /* The '@' becomes the leading NUL, and the length covers just the name. */
        snprintf(m->m_addr, sizeof(m->m_addr), "@upechod-test-notify-%ld-%u", (long)getpid(),
                 counter++);
        memcpy(sun.sun_path, m->m_addr, strlen(m->m_addr));
        sun.sun_path[0] = '\0';
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(m->m_addr));
    } else {
        /* Never a directory in /: without scratch_setup() there is no place for it. */
        r = harness_scratch[0] == '\0' ? -ENOENT : 0;
        snprintf(m->m_dir, sizeof(m->m_dir), "%s/XXXXXX", harness_scratch);
        if (r == 0 && mkdtemp(m->m_dir) == NULL)
            r = -errno;
        if (r < 0) {
            m->m_dir[0] = '\0';
            manager_close(m);
            return r;
        }
        snprintf(m->m_addr, sizeof(m->m_addr), "%s/notify", m->m_dir);
        snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", m->m_addr);
    }
    if (setsockopt(m->m_fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) == -1 ||
        bind(m->m_fd, (struct sockaddr *)&sun, len) == -1 ||
        setenv("NOTIFY_SOCKET", m->m_addr, 1) == -1) {
        r = -errno;
        manager_close(m);
        return r;
    }
    return 0;
}

void
manager_close(struct manager *m)
{
    if (m->m_fd >= 0)
        close(m->m_fd);
    m->m_fd = -1;
    harness_rm_tree(m->m_dir);
    m->m_dir[0] = '\0';
    unsetenv("NOTIFY_SOCKET");
}

ssize_t
manager_recv(struct manager *m, char *buf, size_t size, pid_t *pid, long long timeout_ms)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(struct ucred))];
    } control;
    struct iovec iov = {.iov_base = buf, .iov_len = size - 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    struct cmsghdr *c;
    ssize_t n;
    int r = harness_poll1(m->m_fd, POLLIN, timeout_ms);

    if (r < 0)
        return r;
    if (r == 0)
        return -ETIMEDOUT;
    mh.msg_control = control.buf;
    mh.msg_controllen = sizeof(control.buf);
    n = recvmsg(m->m_fd, &mh, MSG_DONTWAIT);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    if (pid != NULL)
        *pid = -1;
    for (c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS && pid != NULL) {
            struct ucred uc;

            memcpy(&uc, CMSG_DATA(c), sizeof(uc));
            *pid = uc.pid;
        }
    }
    return n;
}

void
listen_env_set(pid_t pid, size_t n, const char *names)
{
    char buf[32];

    snprintf(buf, sizeof(buf), "%ld", (long)pid);
    setenv("LISTEN_PID", buf, 1);
    snprintf(buf, sizeof(buf), "%zu", n);
    setenv("LISTEN_FDS", buf, 1);
    if (names != NULL)
        setenv("LISTEN_FDNAMES", names, 1);
    else
        unsetenv("LISTEN_FDNAMES");
}
