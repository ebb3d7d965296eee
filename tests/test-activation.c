/* test-activation.c: taking passed sockets, with real sockets moved to fds 3.. in a child. */
#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "activation.h"
#include "check-main.h"
#include "harness.h"

/*
 * Each case runs in a forked child, because it has to own fds 3, 4, 5...,
 * which check itself may be using in the test process.  The child reports
 * the first failed expectation as text through a pipe kept at a high fd.
 */
#define CHILD_PIPE_FD 200
#define CHILD_HIGH_FD 100

static char child_msg[512];

#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            snprintf(child_msg, sizeof(child_msg), __VA_ARGS__);                                   \
            return child_msg;                                                                      \
        }                                                                                          \
    } while (0)

/* The sockets a case passes, as created (before they are moved to 3..). */
struct passed {
    int p_fd[8];
    struct sockaddr_storage p_addr[8];
    socklen_t p_addrlen[8];
    size_t p_n;
};

static char unix_dir[64];

static void
passed_add(struct passed *p, int fd)
{
    p->p_fd[p->p_n] = fd;
    p->p_addrlen[p->p_n] = sizeof(p->p_addr[p->p_n]);
    getsockname(fd, (struct sockaddr *)&p->p_addr[p->p_n], &p->p_addrlen[p->p_n]);
    p->p_n++;
}

static int
inet_socket(int family, int type, int listening)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd = socket(family, type, 0);

    if (fd == -1)
        return -1;
    memset(&ss, 0, sizeof(ss));
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

        sin6->sin6_family = AF_INET6;
        sin6->sin6_addr = in6addr_loopback;
        len = sizeof(*sin6);
    }
    if (bind(fd, (struct sockaddr *)&ss, len) == -1 || (listening && listen(fd, 8) == -1)) {
        close(fd);
        return -1;
    }
    return fd;
}

static int
unix_socket(const char *name, int type, int listening)
{
    struct sockaddr_un sun;
    int fd = socket(AF_UNIX, type, 0);

    if (fd == -1)
        return -1;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/%s", unix_dir, name);
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
        (listening && listen(fd, 8) == -1)) {
        close(fd);
        return -1;
    }
    return fd;
}

/*
 * Move the sockets to 3, 4, ... as a service manager would hand them over:
 * first out of the way to high fds, since creating them may have used 3..
 * dup2() leaves the new fds without FD_CLOEXEC, as a manager's exec does.
 */
static const char *
passed_install(const struct passed *p)
{
    int high[8];

    for (size_t i = 0; i < p->p_n; i++) {
        high[i] = fcntl(p->p_fd[i], F_DUPFD, CHILD_HIGH_FD);
        EXPECT(high[i] >= 0, "F_DUPFD: %s", strerror(errno));
        close(p->p_fd[i]);
    }
    for (size_t i = 0; i < p->p_n; i++) {
        EXPECT(dup2(high[i], ACTIVATION_FD_START + (int)i) == ACTIVATION_FD_START + (int)i,
               "dup2: %s", strerror(errno));
        close(high[i]);
    }
    return NULL;
}

static const char *
expect_env_unset(void)
{
    EXPECT(getenv("LISTEN_PID") == NULL, "LISTEN_PID still set");
    EXPECT(getenv("LISTEN_FDS") == NULL, "LISTEN_FDS still set");
    EXPECT(getenv("LISTEN_FDNAMES") == NULL, "LISTEN_FDNAMES still set");
    return NULL;
}

/* Check what was collected against what was passed. */
static const char *
expect_collected(const struct passed *p, const struct activated_fd *fds, size_t n,
                 const int *domain, const int *type, const char *const *name)
{
    EXPECT(n == p->p_n, "collected %zu sockets, passed %zu", n, p->p_n);
    for (size_t i = 0; i < n; i++) {
        int fl;

        EXPECT(fds[i].af_fd == ACTIVATION_FD_START + (int)i, "[%zu] fd %d", i, fds[i].af_fd);
        EXPECT(fds[i].af_domain == domain[i], "[%zu] domain %d, want %d", i, fds[i].af_domain,
               domain[i]);
        EXPECT(fds[i].af_type == type[i], "[%zu] type %d, want %d", i, fds[i].af_type, type[i]);
        EXPECT(fds[i].af_addrlen == p->p_addrlen[i], "[%zu] address length %u, want %u", i,
               (unsigned)fds[i].af_addrlen, (unsigned)p->p_addrlen[i]);
        EXPECT(memcmp(&fds[i].af_addr, &p->p_addr[i], p->p_addrlen[i]) == 0,
               "[%zu] address differs", i);
        EXPECT(strcmp(fds[i].af_name, name[i]) == 0, "[%zu] name '%s', want '%s'", i,
               fds[i].af_name, name[i]);
        fl = fcntl(fds[i].af_fd, F_GETFD);
        EXPECT(fl != -1 && (fl & FD_CLOEXEC), "[%zu] FD_CLOEXEC not set", i);
        fl = fcntl(fds[i].af_fd, F_GETFL);
        EXPECT(fl != -1 && (fl & O_NONBLOCK), "[%zu] O_NONBLOCK not set", i);
    }
    return NULL;
}

/* Remove the cases' socket directory and the socket files in it. */
static void
remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;

    while (d != NULL && (de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            unlinkat(dirfd(d), de->d_name, 0);
    if (d != NULL)
        closedir(d);
    rmdir(dir);
}

/* Run fn in a child and fail the test with its message unless it returns NULL. */
static void
run_in_child(const char *(*fn)(void))
{
    char msg[sizeof(child_msg)] = "";
    int pfd[2], status;
    ssize_t len;
    pid_t pid;

    snprintf(unix_dir, sizeof(unix_dir), "/tmp/upechod-activation-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(unix_dir));
    ck_assert_int_eq(pipe(pfd), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        const char *err;
        int out = fcntl(pfd[1], F_DUPFD_CLOEXEC, CHILD_PIPE_FD);

        close(pfd[0]);
        close(pfd[1]);
        err = fn();
        if (err != NULL && out >= 0)
            (void)!write(out, err, strlen(err));
        _exit(err == NULL ? 0 : 1);
    }
    close(pfd[1]);
    len = read(pfd[0], msg, sizeof(msg) - 1);
    msg[len > 0 ? len : 0] = '\0';
    close(pfd[0]);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    remove_dir(unix_dir);

    ck_assert_msg(msg[0] == '\0', "%s", msg);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status 0x%x", status);
}

static const char *
case_not_activated(void)
{
    static struct activated_fd sentinel;
    struct activated_fd *fds = &sentinel;
    size_t n = 99;

    unsetenv("LISTEN_PID");
    setenv("LISTEN_FDS", "2", 1);
    EXPECT(activation_collect(&fds, &n) == 0, "collect failed");
    EXPECT(n == 0 && fds == NULL, "collected %zu without LISTEN_PID", n);
    EXPECT(getenv("LISTEN_FDS") != NULL, "LISTEN_FDS unset though it was not ours");
    return NULL;
}

static const char *
case_tcp_udp_unix(void)
{
    static const int domain[] = {AF_INET, AF_INET, AF_UNIX};
    static const int type[] = {SOCK_STREAM, SOCK_DGRAM, SOCK_STREAM};
    static const char *const name[] = {"tcp", "udp", "upechod.socket"};
    struct passed p = {.p_n = 0};
    struct activated_fd *fds;
    const char *err;
    size_t n;
    int r;

    passed_add(&p, inet_socket(AF_INET, SOCK_STREAM, 1));
    passed_add(&p, inet_socket(AF_INET, SOCK_DGRAM, 0));
    passed_add(&p, unix_socket("s", SOCK_STREAM, 1));
    for (size_t i = 0; i < p.p_n; i++)
        EXPECT(p.p_fd[i] >= 0, "socket %zu: %s", i, strerror(errno));
    if ((err = passed_install(&p)) != NULL)
        return err;
    listen_env_set(getpid(), 3, "tcp:udp:upechod.socket");

    r = activation_collect(&fds, &n);
    EXPECT(r == 0, "collect: %s", strerror(-r));
    if ((err = expect_collected(&p, fds, n, domain, type, name)) != NULL)
        return err;
    if ((err = expect_env_unset()) != NULL)
        return err;
    activation_free(fds, n);

    /* The variables are gone, so a second look finds nothing to take twice. */
    r = activation_collect(&fds, &n);
    EXPECT(r == 0 && n == 0, "second collect: %d, %zu sockets", r, n);
    return NULL;
}

static const char *
case_ipv6(void)
{
    static const int domain[] = {AF_INET6, AF_INET6};
    static const int type[] = {SOCK_STREAM, SOCK_DGRAM};
    static const char *const name[] = {"unknown", "unknown"};
    struct passed p = {.p_n = 0};
    struct activated_fd *fds;
    const char *err;
    size_t n;
    int r, fd;

    fd = inet_socket(AF_INET6, SOCK_STREAM, 1);
    if (fd < 0)
        return NULL; /* no ::1 here: nothing to test */
    passed_add(&p, fd);
    passed_add(&p, inet_socket(AF_INET6, SOCK_DGRAM, 0));
    EXPECT(p.p_fd[1] >= 0, "udp6: %s", strerror(errno));
    if ((err = passed_install(&p)) != NULL)
        return err;
    listen_env_set(getpid(), 2, NULL);

    r = activation_collect(&fds, &n);
    EXPECT(r == 0, "collect: %s", strerror(-r));
    if ((err = expect_collected(&p, fds, n, domain, type, name)) != NULL)
        return err;
    activation_free(fds, n);
    return expect_env_unset();
}

/* Names label logs only: too few are filled with "unknown", too long are cut. */
static const char *
case_names(void)
{
    static const int domain[] = {AF_INET, AF_INET, AF_INET};
    static const int type[] = {SOCK_STREAM, SOCK_STREAM, SOCK_STREAM};
    char names[600], longname[256];
    const char *name[3] = {longname, "unknown", "unknown"};
    struct passed p = {.p_n = 0};
    struct activated_fd *fds;
    const char *err;
    size_t n;
    int r;

    for (int i = 0; i < 3; i++) {
        passed_add(&p, inet_socket(AF_INET, SOCK_STREAM, 1));
        EXPECT(p.p_fd[i] >= 0, "socket: %s", strerror(errno));
    }
    if ((err = passed_install(&p)) != NULL)
        return err;
    memset(names, 'n', 300);
    strcpy(names + 300, "::");
    memset(longname, 'n', 255);
    longname[255] = '\0';
    listen_env_set(getpid(), 3, names);

    r = activation_collect(&fds, &n);
    EXPECT(r == 0, "collect: %s", strerror(-r));
    if ((err = expect_collected(&p, fds, n, domain, type, name)) != NULL)
        return err;
    activation_free(fds, n);
    return NULL;
}

/* Variables naming another process describe its fds, not ours: ignored and left alone. */
static const char *
case_other_pid(void)
{
    struct passed p = {.p_n = 0};
    struct activated_fd *fds;
    const char *err;
    size_t n = 99;
    int fl;

    passed_add(&p, inet_socket(AF_INET, SOCK_STREAM, 1));
    EXPECT(p.p_fd[0] >= 0, "socket: %s", strerror(errno));
    if ((err = passed_install(&p)) != NULL)
        return err;
    listen_env_set(getppid(), 1, "tcp");

    EXPECT(activation_collect(&fds, &n) == 0, "collect failed");
    EXPECT(n == 0 && fds == NULL, "collected %zu sockets of another process", n);
    EXPECT(getenv("LISTEN_PID") != NULL && getenv("LISTEN_FDS") != NULL &&
               getenv("LISTEN_FDNAMES") != NULL,
           "another process's variables were unset");
    fl = fcntl(ACTIVATION_FD_START, F_GETFD);
    EXPECT(fl != -1 && !(fl & FD_CLOEXEC), "fd 3 was touched");
    return NULL;
}

static const char *
case_zero_fds(void)
{
    struct activated_fd *fds;
    size_t n = 99;

    listen_env_set(getpid(), 0, NULL);
    EXPECT(activation_collect(&fds, &n) == 0, "collect failed");
    EXPECT(n == 0 && fds == NULL, "collected %zu of LISTEN_FDS=0", n);
    return expect_env_unset();
}

static const char *
case_bad_env(void)
{
    static const char *const bad_fds[] = {"", "x", "-1", "1x", "4294967296000"};
    struct activated_fd *fds;
    char pid[32];
    size_t n;
    const char *err;

    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    for (size_t i = 0; i < sizeof(bad_fds) / sizeof(bad_fds[0]); i++) {
        setenv("LISTEN_PID", pid, 1);
        setenv("LISTEN_FDS", bad_fds[i], 1);
        EXPECT(activation_collect(&fds, &n) == -EINVAL, "LISTEN_FDS='%s' accepted", bad_fds[i]);
        EXPECT(n == 0 && fds == NULL, "LISTEN_FDS='%s' gave sockets", bad_fds[i]);
        if ((err = expect_env_unset()) != NULL)
            return err;
    }
    setenv("LISTEN_PID", "me", 1);
    setenv("LISTEN_FDS", "1", 1);
    EXPECT(activation_collect(&fds, &n) == -EINVAL, "LISTEN_PID=me accepted");
    return NULL;
}

/* Pass one good TCP listener then the given fd, and expect -EINVAL. */
static const char *
expect_refused(int fd, const char *what)
{
    struct passed p = {.p_n = 0};
    struct activated_fd *fds;
    const char *err;
    size_t n = 99;

    passed_add(&p, inet_socket(AF_INET, SOCK_STREAM, 1));
    EXPECT(p.p_fd[0] >= 0, "socket: %s", strerror(errno));
    EXPECT(fd >= 0, "%s: %s", what, strerror(errno));
    passed_add(&p, fd);
    if ((err = passed_install(&p)) != NULL)
        return err;
    listen_env_set(getpid(), 2, "good:bad");
    EXPECT(activation_collect(&fds, &n) == -EINVAL, "%s accepted", what);
    EXPECT(n == 0 && fds == NULL, "%s: sockets returned with the error", what);
    EXPECT(fcntl(ACTIVATION_FD_START + 1, F_GETFD) != -1, "%s: fd closed on error", what);
    return expect_env_unset();
}

static const char *
case_pipe(void)
{
    int pfd[2];

    EXPECT(pipe(pfd) == 0, "pipe: %s", strerror(errno));
    close(pfd[1]);
    return expect_refused(pfd[0], "a pipe");
}

static const char *
case_tcp_not_listening(void)
{
    return expect_refused(inet_socket(AF_INET, SOCK_STREAM, 0), "a TCP socket not listening");
}

static const char *
case_unix_dgram(void)
{
    return expect_refused(unix_socket("d", SOCK_DGRAM, 0), "a UNIX datagram socket");
}

static const char *
case_unix_not_listening(void)
{
    return expect_refused(unix_socket("n", SOCK_STREAM, 0), "a UNIX stream socket not listening");
}

static const char *
case_seqpacket(void)
{
    return expect_refused(unix_socket("q", SOCK_SEQPACKET, 1), "a SEQPACKET socket");
}

static const char *
case_closed_fd(void)
{
    struct activated_fd *fds;
    size_t n;

    close(ACTIVATION_FD_START);
    close(ACTIVATION_FD_START + 1);
    listen_env_set(getpid(), 2, NULL);
    EXPECT(activation_collect(&fds, &n) == -EINVAL, "closed fds accepted");
    return NULL;
}

START_TEST(test_not_activated)
{
    run_in_child(case_not_activated);
}
END_TEST

START_TEST(test_tcp_udp_unix)
{
    run_in_child(case_tcp_udp_unix);
}
END_TEST

START_TEST(test_ipv6)
{
    run_in_child(case_ipv6);
}
END_TEST

START_TEST(test_names)
{
    run_in_child(case_names);
}
END_TEST

START_TEST(test_other_pid)
{
    run_in_child(case_other_pid);
}
END_TEST

START_TEST(test_zero_fds)
{
    run_in_child(case_zero_fds);
}
END_TEST

START_TEST(test_bad_env)
{
    run_in_child(case_bad_env);
}
END_TEST

START_TEST(test_refused)
{
    run_in_child(case_pipe);
    run_in_child(case_tcp_not_listening);
    run_in_child(case_unix_dgram);
    run_in_child(case_unix_not_listening);
    run_in_child(case_seqpacket);
    run_in_child(case_closed_fd);
}
END_TEST

static Suite *
activation_suite(void)
{
    Suite *s = suite_create("activation");
    TCase *tc = tcase_create("collect");

    tcase_add_test(tc, test_not_activated);
    tcase_add_test(tc, test_tcp_udp_unix);
    tcase_add_test(tc, test_ipv6);
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_other_pid);
    tcase_add_test(tc, test_zero_fds);
    tcase_add_test(tc, test_bad_env);
    tcase_add_test(tc, test_refused);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return check_main(activation_suite(), CK_NORMAL);
}
