/* test-unix.c: the daemon's AF_UNIX stream echo and how it treats the socket file. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "check-helpers.h"
#include "check-main.h"
#include "harness.h"

/* Exit code for configuration errors, which a busy or foreign path is not. */
#define EXIT_CONFIG 78

static const char unix_ini[] = INI_UNIX_ONLY "path = @DIR@/echo.sock\n"
                                             "mode = 0600\n";

/*
 * A directory of our own for tests that must put something at the socket
 * path before the daemon starts (the daemon's temp dir does not exist yet).
 */
static void
make_dir(char *dir, size_t size)
{
    const char *tmp = getenv("TMPDIR");

    snprintf(dir, size, "%s/upechod-unix-XXXXXX", tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

/* Config text for a unix listener at path with the given mode. */
static void
unix_ini_for(char *buf, size_t size, const char *path, const char *mode)
{
    snprintf(buf, size, INI_UNIX_ONLY "path = %s\nmode = %s\n", path, mode);
}

/* A bound AF_UNIX socket at path, listening or not. */
static int
bind_unix(const char *path, bool do_listen)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    ck_assert_uint_lt(strlen(path), sizeof(sun.sun_path));
    strcpy(sun.sun_path, path);
    ck_assert_msg(bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0, "bind %s: %s", path,
                  strerror(errno));
    if (do_listen)
        ck_assert_int_eq(listen(fd, 4), 0);
    return fd;
}

static void
check_echo(const char *path)
{
    char got[32];
    int fd = unix_connect(path);

    ck_assert_msg(fd >= 0, "connect %s: %s", path, strerror(-fd));
    ck_assert_int_eq(write_all(fd, "unix says hi, 42!", 17), 0);
    ck_assert_int_eq(read_exact(fd, got, 17, 5000), 17);
    ck_assert_mem_eq(got, "UNIX SAYS HI, 42!", 17);
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    ck_assert_int_eq(read_eof(fd, 5000), 0);
    close(fd);
}

START_TEST(test_echo)
{
    struct daemon_proc dp;
    char want[512];
    static unsigned char sent[200000], got[200000];
    int fd;

    start_or_fail(&dp, unix_ini);
    snprintf(want, sizeof(want), "%s/echo.sock", dp.dp_dir);
    ck_assert_str_eq(dp.dp_unix_path, want);
    check_echo(dp.dp_unix_path);

    /* More than one socket buffer's worth, read after it was all sent. */
    fill_pattern(sent, sizeof(sent), 9);
    fd = unix_connect(dp.dp_unix_path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write_all(fd, sent, sizeof(sent)), 0);
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    ck_assert_int_eq(read_exact(fd, got, sizeof(got), 10000), (ssize_t)sizeof(got));
    ck_assert_int_eq(ref_mismatch(got, sent, sizeof(sent)), -1);
    ck_assert_int_eq(read_eof(fd, 5000), 0);
    close(fd);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/* mode= is applied to the file whatever our umask would have made of it. */
START_TEST(test_mode)
{
    static const struct {
        const char *text;
        mode_t mode;
    } modes[] = {{"0600", 0600}, {"0666", 0666}, {"0660", 0660}};
    char ini[1024];

    umask(022);
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        struct daemon_proc dp;
        struct stat st;

        unix_ini_for(ini, sizeof(ini), "@DIR@/m.sock", modes[i].text);
        start_or_fail(&dp, ini);
        ck_assert_int_eq(stat(dp.dp_unix_path, &st), 0);
        ck_assert(S_ISSOCK(st.st_mode));
        ck_assert_msg((st.st_mode & 07777) == modes[i].mode, "mode = %s gave %04o", modes[i].text,
                      (unsigned)(st.st_mode & 07777));
        check_echo(dp.dp_unix_path);
        ck_assert_int_eq(daemon_stop(&dp), 0);
    }
}
END_TEST

/* A socket file nobody listens on is left over from a crash: replace it. */
START_TEST(test_stale_replaced)
{
    char dir[256], path[300], ini[1024];
    struct daemon_proc dp;
    struct stat st;

    make_dir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/stale.sock", dir);
    close(bind_unix(path, false));
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    ck_assert_int_eq(unix_connect(path), -ECONNREFUSED);

    unix_ini_for(ini, sizeof(ini), path, "0600");
    start_or_fail(&dp, ini);
    check_echo(path);
    ck_assert_int_eq(daemon_stop(&dp), 0);
    ck_assert_int_eq(stat(path, &st), -1);
    rmdir(dir);
}
END_TEST

/* A socket someone listens on belongs to a running server: refuse, touch nothing. */
START_TEST(test_live_refused)
{
    char dir[256], path[300], ini[1024];
    struct daemon_proc dp;
    int lfd, cfd, status = -1;
    struct stat st;

    make_dir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/live.sock", dir);
    lfd = bind_unix(path, true);

    unix_ini_for(ini, sizeof(ini), path, "0600");
    ck_assert_int_eq(daemon_start(&dp, ini), -ECHILD);
    ck_assert_int_eq(daemon_wait(&dp, 1000, &status), 0);
    ck_assert_msg(status != 0 && status != EXIT_CONFIG, "exit status %d", status);
    ck_assert_msg(daemon_log_contains(&dp, path), "the error does not name %s", path);
    ck_assert_int_eq(daemon_log_count(&dp, " error: "), 1);
    ck_assert(!daemon_log_contains(&dp, " ready\n"));
    ck_assert_int_eq(daemon_stop(&dp), status);

    /* Our listener is untouched and still reachable by its path. */
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    cfd = unix_connect(path);
    ck_assert_msg(cfd >= 0, "our own listener is gone: %s", strerror(-cfd));
    close(cfd);
    close(lfd);
    unlink(path);
    rmdir(dir);
}
END_TEST

/* Something that is not a socket at the path is refused and left as it was. */
START_TEST(test_not_a_socket_refused)
{
    static const char content[] = "precious data, not a socket\n";
    char dir[256], path[300], ini[1024], buf[64];
    struct daemon_proc dp;
    int fd, status = -1;
    struct stat st;

    make_dir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/file.sock", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write_all(fd, content, sizeof(content) - 1), 0);
    close(fd);

    unix_ini_for(ini, sizeof(ini), path, "0600");
    ck_assert_int_eq(daemon_start(&dp, ini), -ECHILD);
    ck_assert_int_eq(daemon_wait(&dp, 1000, &status), 0);
    ck_assert_msg(status != 0, "exit status %d", status);
    ck_assert_msg(daemon_log_contains(&dp, path), "the error does not name %s", path);
    ck_assert_int_eq(daemon_stop(&dp), status);

    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    ck_assert_uint_eq((unsigned)(st.st_mode & 07777), 0644);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(read_exact(fd, buf, sizeof(buf), 1000), (ssize_t)sizeof(content) - 1);
    ck_assert_mem_eq(buf, content, sizeof(content) - 1);
    close(fd);
    unlink(path);
    rmdir(dir);
}
END_TEST

/* A clean exit, by SIGTERM or SIGINT, removes the socket file. */
START_TEST(test_removed_on_exit)
{
    static const int sigs[] = {SIGTERM, SIGINT};

    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        struct daemon_proc dp;
        int status = -1;
        struct stat st;

        start_or_fail(&dp, unix_ini);
        ck_assert_int_eq(stat(dp.dp_unix_path, &st), 0);
        check_echo(dp.dp_unix_path);
        ck_assert_int_eq(daemon_signal(&dp, sigs[i]), 0);
        ck_assert_int_eq(daemon_wait(&dp, 10000, &status), 0);
        ck_assert_int_eq(status, 0);
        ck_assert_msg(stat(dp.dp_unix_path, &st) == -1 && errno == ENOENT,
                      "%s still there after signal %d", dp.dp_unix_path, sigs[i]);
        ck_assert_int_eq(daemon_stop(&dp), 0);
    }
}
END_TEST

/*
 * The socket's directory is writable by someone else, who swaps the socket
 * for a symlink to a private file before a reload: the file keeps its mode
 * (no chmod of a path, ever), and the exit does not remove the symlink.
 */
START_TEST(test_symlink_swap_on_reload)
{
    char dir[256], secret[300], ini[1024];
    struct daemon_proc dp;
    struct stat st;
    int fd;

    make_dir(dir, sizeof(dir));
    snprintf(secret, sizeof(secret), "%s/secret", dir);
    fd = open(secret, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(chmod(secret, 0600), 0);

    unix_ini_for(ini, sizeof(ini), "@DIR@/s.sock", "0666");
    start_or_fail(&dp, ini);
    ck_assert_int_eq(unlink(dp.dp_unix_path), 0);
    ck_assert_int_eq(symlink(secret, dp.dp_unix_path), 0);
    ck_assert_int_eq(daemon_signal(&dp, SIGHUP), 0);
    for (long long end = now_ms() + 10000; !daemon_log_contains(&dp, "configuration reloaded");)
        ck_assert_msg(now_ms() < end, "no reload in 10 s");
    ck_assert_int_eq(stat(secret, &st), 0);
    ck_assert_msg((st.st_mode & 07777) == 0600, "the symlink's target became %04o",
                  (unsigned)(st.st_mode & 07777));
    ck_assert_int_eq(daemon_signal(&dp, SIGTERM), 0);
    ck_assert_int_eq(daemon_wait(&dp, 10000, NULL), 0);
    ck_assert_int_eq(lstat(dp.dp_unix_path, &st), 0);
    ck_assert(S_ISLNK(st.st_mode));
    ck_assert_int_eq(stat(secret, &st), 0);
    ck_assert_uint_eq((unsigned)(st.st_mode & 07777), 0600);
    unlink(dp.dp_unix_path);
    daemon_stop(&dp);
    unlink(secret);
    rmdir(dir);
}
END_TEST

/*
 * A live listener whose backlog is full: the stale-socket probe must not
 * wait in connect(2).  The daemon refuses the path at once and exits.
 */
START_TEST(test_live_full_backlog_refused)
{
    char dir[256], path[300], ini[1024];
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    struct daemon_proc dp;
    int lfd, cfd[64], n = 0, status = -1;

    make_dir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/full.sock", dir);
    lfd = bind_unix(path, false);
    ck_assert_int_eq(listen(lfd, 0), 0);
    strcpy(sun.sun_path, path);
    /* Fill the backlog: non-blocking connects until the kernel says EAGAIN. */
    for (; n < 64; n++) {
        cfd[n] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(cfd[n], 0);
        if (connect(cfd[n], (struct sockaddr *)&sun, sizeof(sun)) == -1) {
            ck_assert_int_eq(errno, EAGAIN);
            close(cfd[n]);
            break;
        }
    }
    ck_assert_int_lt(n, 64);

    unix_ini_for(ini, sizeof(ini), path, "0600");
    ck_assert_int_eq(daemon_spawn(&dp, ini, NULL), 0);
    ck_assert_msg(daemon_wait(&dp, 10000, &status) == 0,
                  "the daemon hangs on a listener with a full backlog");
    ck_assert_msg(status != 0 && status != EXIT_CONFIG, "exit status %d", status);
    ck_assert(daemon_log_contains(&dp, "another process is listening on this socket"));
    daemon_stop(&dp);
    for (int i = 0; i < n; i++)
        close(cfd[i]);
    close(lfd);
    unlink(path);
    rmdir(dir);
}
END_TEST

/*
 * Started as root with user and group: the socket belongs to them, so
 * mode 0660 lets the group in, and the daemon, no longer root, can still
 * remove it at exit.
 */
START_TEST(test_owned_by_user)
{
    char dir[256], path[300], ini[1024];
    struct daemon_proc dp;
    struct stat st;
    int status = -1;

    if (geteuid() != 0)
        return;
    /* The socket's directory is the user's, as the unlink at exit needs. */
    make_dir(dir, sizeof(dir));
    ck_assert_int_eq(chown(dir, 65534, 65534), 0);
    snprintf(path, sizeof(path), "%s/o.sock", dir);
    snprintf(ini, sizeof(ini),
             INI_UNIX_ONLY "path = %s\nmode = 0660\n[server]\nuser = nobody\ngroup = nogroup\n",
             path);
    start_or_fail(&dp, ini);
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    ck_assert_uint_eq(st.st_uid, 65534);
    ck_assert_uint_eq(st.st_gid, 65534);
    ck_assert_uint_eq((unsigned)(st.st_mode & 07777), 0660);
    check_echo(path);
    ck_assert_int_eq(daemon_signal(&dp, SIGTERM), 0);
    ck_assert_int_eq(daemon_wait(&dp, 10000, &status), 0);
    ck_assert_int_eq(status, 0);
    ck_assert_msg(lstat(path, &st) == -1 && errno == ENOENT, "%s still there after exit", path);
    ck_assert(!daemon_log_contains(&dp, "cannot remove"));
    daemon_stop(&dp);
    rmdir(dir);
}
END_TEST

/*
 * A socket path with control bytes (an escape sequence, a newline) reaches
 * the log escaped as \\xHH: no raw control byte, no forged second line.
 */
START_TEST(test_control_bytes_escaped)
{
    char dir[256], path[300], want[320], ini[1024], buf[8192];
    struct daemon_proc dp;
    ssize_t n;
    int fd;

    make_dir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/a\x1b[31mb\x7f.sock", dir);
    snprintf(want, sizeof(want), "listening on unix %s/a\\x1b[31mb\\x7f.sock\n", dir);
    unix_ini_for(ini, sizeof(ini), path, "0600");
    start_or_fail(&dp, ini);
    check_echo(path);
    ck_assert_msg(daemon_log_contains(&dp, want), "no %s in the log", want);
    fd = open(dp.dp_log, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    n = read(fd, buf, sizeof(buf));
    close(fd);
    ck_assert_int_gt(n, 0);
    for (ssize_t i = 0; i < n; i++)
        ck_assert_msg(buf[i] == '\n' || ((unsigned char)buf[i] >= 0x20 && buf[i] != 0x7f),
                      "raw byte 0x%02x in the log at %zd", (unsigned char)buf[i], i);
    ck_assert_int_eq(daemon_stop(&dp), 0);
    rmdir(dir);
}
END_TEST

static Suite *
unix_suite(void)
{
    Suite *s = suite_create("unix");
    TCase *tc = tcase_create("socket");

    tcase_add_test(tc, test_echo);
    tcase_add_test(tc, test_mode);
    tcase_add_test(tc, test_stale_replaced);
    tcase_add_test(tc, test_live_refused);
    tcase_add_test(tc, test_not_a_socket_refused);
    tcase_add_test(tc, test_removed_on_exit);
    tcase_add_test(tc, test_symlink_swap_on_reload);
    tcase_add_test(tc, test_live_full_backlog_refused);
    tcase_add_test(tc, test_owned_by_user);
    tcase_add_test(tc, test_control_bytes_escaped);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return check_main(unix_suite(), CK_ENV);
}
