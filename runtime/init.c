/* init.c — pid 1 of a sandbox, and the last steps before any workload runs.
 *
 * The sandbox's first process (cloned by sandbox.c) becomes its init: it
 * starts the entrypoint, reaps every zombie re-parented to it, forwards
 * signals to the entrypoint, and exits with the entrypoint's status, which
 * takes the whole pid namespace down with it.  Init itself gives up its
 * privileges like any workload, so a process that takes it over gains
 * nothing. */
#include "internal.h"

#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

int sbx__msg_send(int fd, int type, const sbx_error *err)
{
    struct sbx__msg m = {.type = type};

    if (err) {
        m.code = err->code;
        memcpy(m.message, err->message, sizeof(m.message));
        m.message[sizeof(m.message) - 1] = '\0';
    }
    while (send(fd, &m, sizeof(m), MSG_NOSIGNAL) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    return 0;
}

int sbx__send_fd(int sock, int type, int value, int fd)
{
    struct sbx__msg m = {.type = type, .code = value};
    struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    struct cmsghdr *c;

    memset(&u, 0, sizeof(u));
    mh.msg_control = u.buf;
    mh.msg_controllen = sizeof(u.buf);
    c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    while (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}

/* Receives one message, and the fd it carries (or -1). 0 at EOF. */
int sbx__recv_msg(int sock, struct sbx__msg *m, int *ret_fd)
{
    struct iovec iov = {.iov_base = m, .iov_len = sizeof(*m)};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
    struct cmsghdr *c;
    ssize_t n;

    *ret_fd = -1;
    do
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    if (n == 0)
        return 0;
    if (n != (ssize_t)sizeof(*m))
        return -EPROTO;
    c = CMSG_FIRSTHDR(&mh);
    if (c && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
        memcpy(ret_fd, CMSG_DATA(c), sizeof(int));
    return 1;
}

void sbx__close_fds_except(const int *keep, size_t n_keep)
{
    unsigned next = 3;

    /* keep[] is small; close the gaps between kept fds in ascending order. */
    for (;;) {
        unsigned lowest = ~0U;
        for (size_t i = 0; i < n_keep; i++)
            if (keep[i] >= (int)next && (unsigned)keep[i] < lowest)
                lowest = (unsigned)keep[i];
        if (lowest == ~0U) {
            syscall(SYS_close_range, next, ~0U, 0);
            return;
        }
        if (lowest > next)
            syscall(SYS_close_range, next, lowest - 1, 0);
        next = lowest + 1;
    }
}

static void fail(int err_fd, int code, const char *what, const char *arg)
{
    sbx_error e;

    sbx__error(&e, code, "%s `%s`", what, arg);
    if (err_fd >= 0)
        sbx__msg_send(err_fd, SBX__MSG_ERROR, &e);
    _exit(127);
}

/* execvpe() searches the PATH of the calling process, which here is the
 * host's: search the sandbox's own PATH instead.  Returns the errno to report. */
static int exec_in_path(const char *const *argv, const char *const *env)
{
    const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    char buf[4096];
    int saved = ENOENT;

    if (strchr(argv[0], '/')) {
        execve(argv[0], (char *const *)argv, (char *const *)env);
        return errno;
    }
    for (const char *const *e = env; *e; e++)
        if (!strncmp(*e, "PATH=", 5))
            path = *e + 5;
    while (*path) {
        const char *end = strchrnul(path, ':');
        size_t len = (size_t)(end - path);

        if (len == 0)
            len = 1, path = ".";
        if (len + strlen(argv[0]) + 2 <= sizeof(buf)) {
            memcpy(buf, path, len);
            buf[len] = '/';
            strcpy(buf + len + 1, argv[0]);
            execve(buf, (char *const *)argv, (char *const *)env);
            if (errno != ENOENT && errno != ENOTDIR)
                saved = errno;
        }
        path = *end ? end + 1 : end;
    }
    return saved;
}

/* Default dispositions for every signal: an ignored signal survives execve,
 * and the caller's (sbx-run ignores SIGINT and SIGTERM) must not reach the
 * sandbox. */
static void reset_signals(void)
{
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
}

void sbx__exec_workload(const struct sbx__proc_spec *spec, int err_fd)
{
    static const char *const empty_env[] = {NULL};
    sigset_t none;
    int r;

    /* Init reset every disposition before it blocked all signals, and
     * installs no handler: only the mask is left to clear. */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (size_t i = 0; i < spec->n_rlimits; i++) {
        struct rlimit rl = {.rlim_cur = spec->rlimits[i].soft, .rlim_max = spec->rlimits[i].hard};
        if (setrlimit(spec->rlimits[i].resource, &rl) < 0)
            fail(err_fd, errno, "setrlimit", "workload");
    }
    if (chdir(spec->workdir ? spec->workdir : "/") < 0)
        fail(err_fd, errno, "chdir to workdir", spec->workdir);
    /* A container's usual umask (runc's, Docker's), not its caller's (a
     * daemon's 077). */
    umask(022);
    if (setgroups(0, NULL) < 0)
        fail(err_fd, errno, "setgroups", "[]");
    /* For a non-root user the capabilities go first: the kernel then clears
     * permitted and effective at setresuid, as for any unprivileged user.
     * Init dropped them already, before it started anything. */
    r = sbx__caps_inherited();
    if (r < 0)
        fail(err_fd, -r, "drop capabilities", "bounding set");
    if (setresgid(spec->gid, spec->gid, spec->gid) < 0)
        fail(err_fd, errno, "setresgid", "gid");
    if (setresuid(spec->uid, spec->uid, spec->uid) < 0)
        fail(err_fd, errno, "setresuid", "uid");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        fail(err_fd, errno, "prctl", "PR_SET_NO_NEW_PRIVS");
    /* Only 0-2 and the (close-on-exec) error fd cross into the sandbox. */
    sbx__close_fds_except(&err_fd, 1);
    if (!spec->seccomp_inherited) {
        r = sbx__seccomp_apply();
        if (r < 0)
            fail(err_fd, -r, "load seccomp filter", "default");
    }
    r = exec_in_path(spec->argv, spec->env ? spec->env : empty_env);
    fail(err_fd, r, "exec", spec->argv[0]);
    _exit(127);
}

/* Signals init passes on to the entrypoint: everything but the ones the
 * kernel keeps for itself and the job-control ones about init's own children. */
static bool forwardable(int sig)
{
    return sig != SIGCHLD && sig != SIGKILL && sig != SIGSTOP && sig != SIGTTIN && sig != SIGTTOU &&
           sig != SIGTSTP;
}

static int status_to_returncode(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 255;
}

/* Init is a copy of the process that created the sandbox: its command line
 * and environment (the host's) would show in the sandbox's /proc/1.  Blank
 * them in place; the kernel reads them from this memory. */
static void hide_host_cmdline(void)
{
    char buf[1024], *p;
    unsigned long arg_start, arg_end, env_start, env_end;
    int n = sbx__read_file_at(AT_FDCWD, "/proc/self/stat", buf, sizeof(buf), NULL);

    if (n <= 0 || !(p = strrchr(buf, ')')))
        return;
    /* Fields 48-51 of stat; p is at the end of field 2. */
    for (int field = 2; field < 48 && p; field++)
        p = strchr(p + 1, ' ');
    if (!p || sscanf(p, " %lu %lu %lu %lu", &arg_start, &arg_end, &env_start, &env_end) != 4)
        return;
    if (arg_end > arg_start + 5) {
        memset((void *)arg_start, 0, arg_end - arg_start);
        memcpy((void *)arg_start, "init", 5);
    }
    if (env_end > env_start)
        memset((void *)env_start, 0, env_end - env_start);
    prctl(PR_SET_NAME, "init", 0, 0, 0);
}

/* Tells the parent the returncode first: it need not wait for the kernel to
 * tear the namespaces down (which starts with this exit) to know it. */
__attribute__((noreturn)) static void exit_with(int sync_fd, int returncode)
{
    sbx_error e = {.code = returncode};

    sbx__msg_send(sync_fd, SBX__MSG_EXIT, &e);
    _exit(returncode);
}

static char **strv_copy(const char *const *v)
{
    size_t n = 0;
    char **copy;

    if (!v)
        return NULL;
    while (v[n])
        n++;
    copy = calloc(n + 1, sizeof(char *));
    for (size_t i = 0; copy && i < n; i++)
        if (!(copy[i] = strdup(v[i])))
            return NULL;
    return copy;
}

/* A copy of spec whose strings live in init's own heap.  Never freed: init
 * keeps it for its whole life. */
static const struct sbx__proc_spec *spec_copy(const struct sbx__proc_spec *spec)
{
    struct sbx__proc_spec *c = malloc(sizeof(*c));

    if (!c)
        return NULL;
    *c = *spec;
    c->argv = (const char *const *)strv_copy(spec->argv);
    c->env = (const char *const *)strv_copy(spec->env);
    c->workdir = spec->workdir ? strdup(spec->workdir) : NULL;
    if ((spec->argv && !c->argv) || (spec->env && !c->env) || (spec->workdir && !c->workdir))
        return NULL;
    return c;
}

struct spawn_args {
    const struct sbx__proc_spec *spec;
    int err_fd;
    int close_fds[2];
    /* an exec: its stdio (-1: /dev/null) or a pty, reported on status_fd */
    bool exec;
    bool pty;
    unsigned short rows, cols;
    int stdio[3];
    int status_fd;
};

/* An exec'd process's terminal: a pty of the sandbox's own devpts (init's
 * /dev/ptmx), its master sent back on the status socket, the process the
 * session leader with the terminal as its controlling tty and stdio. */
static void exec_pty(const struct spawn_args *sa)
{
    struct winsize ws = {.ws_row = sa->rows ? sa->rows : 24, .ws_col = sa->cols ? sa->cols : 80};
    int unlock = 0, master, slave;

    master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || ioctl(master, TIOCSPTLCK, &unlock) < 0)
        fail(sa->err_fd, errno, "open", "/dev/ptmx");
    slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
    if (slave < 0 || ioctl(slave, TIOCSWINSZ, &ws) < 0)
        fail(sa->err_fd, errno, "open the pty's terminal side of", "/dev/ptmx");
    if (sbx__send_fd(sa->status_fd, SBX__MSG_PTY, 0, master) < 0)
        _exit(127);
    close(master);
    if (setsid() < 0 || ioctl(slave, TIOCSCTTY, 0) < 0)
        fail(sa->err_fd, errno, "make the pty the controlling terminal of", "the process");
    for (int i = 0; i < 3; i++)
        if (dup2(slave, i) < 0)
            _exit(127);
    if (slave > 2)
        close(slave);
}

static void exec_stdio(const struct spawn_args *sa)
{
    int fds[3], devnull = -1;

    /* Above 2 first, so that no dup2 overwrites a source still needed. */
    for (int i = 0; i < 3; i++) {
        int src = sa->stdio[i];
        if (src < 0) {
            if (devnull < 0)
                devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
            src = devnull;
        }
        fds[i] = fcntl(src, F_DUPFD_CLOEXEC, 3);
        if (fds[i] < 0)
            fail(sa->err_fd, errno, "duplicate stdio for", "the process");
    }
    for (int i = 0; i < 3; i++)
        if (dup2(fds[i], i) < 0)
            _exit(127);
    setsid();
}

static int spawn_main(void *arg)
{
    const struct spawn_args *sa = arg;

    for (size_t i = 0; i < SBX_ARRAY_SIZE(sa->close_fds); i++)
        if (sa->close_fds[i] >= 0)
            close(sa->close_fds[i]);
    if (sa->exec) {
        if (sa->pty)
            exec_pty(sa);
        else
            exec_stdio(sa);
    } else {
        /* The entrypoint leads its own session, as under docker run. */
        setsid();
    }
    sbx__exec_workload(sa->spec, sa->err_fd);
}

/* Starts a process the way posix_spawn does: the child shares init's memory
 * (no page tables to copy) and init sleeps until it has exec'd or failed.
 * The child only makes system calls and writes its own stack, and init's
 * memory is only read, so the sharing is safe. */
static pid_t spawn(struct spawn_args *sa)
{
#if defined(__SANITIZE_ADDRESS__)
    /* AddressSanitizer cannot follow a child that shares its memory on a
     * stack of our own: sanitizer builds pay for a plain fork. */
    pid_t pid = fork();

    if (pid == 0)
        _exit(spawn_main(sa));
#else
    static char stack[64 * 1024] __attribute__((aligned(16)));
    pid_t pid = clone(spawn_main, stack + sizeof(stack), CLONE_VM | CLONE_VFORK | SIGCHLD, sa);
#endif
    return pid < 0 ? -errno : pid;
}

/* Spawns sa's process with an error socket: 1 and *ret_pid once it has
 * exec'd, else 0 and the reason in *ret_err. */
static int spawn_checked(struct spawn_args *sa, pid_t *ret_pid, sbx_error *ret_err)
{
    int errpipe[2];
    struct sbx__msg m;
    ssize_t n;
    pid_t pid;

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, errpipe) < 0) {
        sbx__error(ret_err, errno, "socketpair for a new process");
        return 0;
    }
    sa->err_fd = errpipe[1];
    sa->close_fds[0] = errpipe[0];
    pid = spawn(sa);
    close(errpipe[1]);
    if (pid < 0) {
        close(errpipe[0]);
        sbx__error(ret_err, (int)-pid, "start a process");
        return 0;
    }
    /* The error socket closes on a successful execve; a message on it is
     * the reason the process could not start. */
    do
        n = recv(errpipe[0], &m, sizeof(m), 0);
    while (n < 0 && errno == EINTR);
    close(errpipe[0]);
    if (n == (ssize_t)sizeof(m)) {
        ret_err->code = m.code;
        memcpy(ret_err->message, m.message, sizeof(ret_err->message));
        ret_err->message[sizeof(ret_err->message) - 1] = '\0';
        return 0; /* init reaps the child like any other */
    }
    *ret_pid = pid;
    return 1;
}

/* ---- processes run for the caller (EXEC) ---- */

struct exec_slot {
    pid_t pid;
    int status_fd;
};

static struct exec_slot *execs;
/* The entrypoint: created with the sandbox, or started late by an EXEC
 * with SBX__EXEC_MAIN in an idle sandbox.  Its exit ends the sandbox. */
static pid_t main_child = -1;
static size_t n_execs, cap_execs;

/* The spec in a memfd, into init's own memory: argv, env and workdir point
 * into *ret_buf.  0, or -errno. */
static int read_exec_spec(int memfd, struct sbx__exec_wire *w, char **ret_buf, char ***ret_strv,
                          const char **ret_workdir)
{
    struct stat st;
    size_t size, n_strings, k = 0;
    char *buf, **strv, *p, *end;

    if (fstat(memfd, &st) < 0)
        return -errno;
    if (st.st_size < (off_t)sizeof(*w) || st.st_size > SBX__EXEC_MAX_SPEC)
        return -EPROTO;
    size = (size_t)st.st_size;
    buf = malloc(size + 1);
    if (!buf)
        return -ENOMEM;
    if (pread(memfd, buf, size, 0) != (ssize_t)size) {
        free(buf);
        return -EIO;
    }
    buf[size] = '\0';
    memcpy(w, buf, sizeof(*w));
    n_strings = (size_t)w->argc + w->envc + (w->has_workdir ? 1 : 0);
    if (w->magic != SBX__EXEC_MAGIC || w->argc == 0 || w->argc > size || w->envc > size) {
        free(buf);
        return -EPROTO;
    }
    /* argv, NULL, env, NULL */
    strv = calloc((size_t)w->argc + w->envc + 2, sizeof(char *));
    if (!strv) {
        free(buf);
        return -ENOMEM;
    }
    p = buf + sizeof(*w);
    end = buf + size;
    *ret_workdir = NULL;
    for (size_t i = 0; i < n_strings; i++) {
        size_t len = strnlen(p, (size_t)(end - p));

        if (p + len >= end) { /* not NUL-terminated inside the spec */
            free(strv);
            free(buf);
            return -EPROTO;
        }
        if (i < w->argc)
            strv[k++] = p;
        else if (i < (size_t)w->argc + w->envc) {
            if (i == w->argc)
                k++; /* argv's NULL */
            strv[k++] = p;
        } else
            *ret_workdir = p;
        p += len + 1;
    }
    *ret_buf = buf;
    *ret_strv = strv;
    return 0;
}

static void exec_report(int status_fd, int code, const char *what)
{
    sbx_error e;

    sbx__error(&e, code, "%s", what);
    (void)sbx__msg_send(status_fd, SBX__MSG_ERROR, &e);
}

/* One EXEC request from the caller: spawn the process as our child (it
 * inherits the sandbox's namespaces, cgroup, capabilities, no_new_privs and
 * seccomp filter from us, which costs nothing), send its pidfd, and keep
 * the status socket to report its returncode when we reap it. */
static void handle_exec(int sync_fd, const struct sbx__proc_spec *sandbox_spec)
{
    struct sbx__msg m;
    struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
    union {
        char buf[CMSG_SPACE(sizeof(int) * 5)];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
    struct spawn_args sa = {.exec = true, .stdio = {-1, -1, -1}, .close_fds = {-1, sync_fd}};
    struct sbx__proc_spec spec = *sandbox_spec;
    struct sbx__exec_wire w = {0};
    const char *workdir = NULL;
    char *buf = NULL, **strv = NULL;
    int fds[5], n_fds = 0, memfd, status_fd, pidfd, r;
    struct cmsghdr *c;
    sbx_error e = {0};
    pid_t pid;
    ssize_t n;

    do
        n = recvmsg(sync_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return;
    c = CMSG_FIRSTHDR(&mh);
    if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        n_fds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        memcpy(fds, CMSG_DATA(c), sizeof(int) * (size_t)n_fds);
    }
    if (n != (ssize_t)sizeof(m) || m.type != SBX__MSG_EXEC || n_fds < 2) {
        for (int i = 0; i < n_fds; i++)
            close(fds[i]);
        return;
    }
    memfd = fds[0];
    status_fd = fds[1];
    for (int i = 0, k = 2; i < 3; i++)
        if ((m.code & (1 << i)) && k < n_fds)
            sa.stdio[i] = fds[k++];
    r = read_exec_spec(memfd, &w, &buf, &strv, &workdir);
    close(memfd);
    if (r < 0) {
        exec_report(status_fd, -r, "read the exec request");
        goto out;
    }
    spec.argv = (const char *const *)strv;
    spec.env = (const char *const *)strv + w.argc + 1;
    spec.workdir = workdir;
    spec.uid = w.uid;
    spec.gid = w.gid;
    spec.seccomp_inherited = true;
    sa.spec = &spec;
    sa.pty = m.code & SBX__EXEC_PTY;
    sa.rows = w.rows;
    sa.cols = w.cols;
    sa.status_fd = status_fd;
    if ((m.code & SBX__EXEC_MAIN) && main_child > 0) {
        exec_report(status_fd, EBUSY, "start an entrypoint: the sandbox has one");
        goto out;
    }
    if (n_execs == cap_execs) {
        size_t cap = cap_execs ? 2 * cap_execs : 16;
        struct exec_slot *ne = realloc(execs, cap * sizeof(*ne));
        if (!ne) {
            exec_report(status_fd, ENOMEM, "track the process");
            goto out;
        }
        execs = ne;
        cap_execs = cap;
    }
    if (!spawn_checked(&sa, &pid, &e)) {
        (void)sbx__msg_send(status_fd, SBX__MSG_ERROR, &e);
        goto out;
    }
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0 || sbx__send_fd(status_fd, SBX__MSG_PIDFD, pid, pidfd) < 0) {
        /* The caller cannot signal or see it: it must not run. */
        kill(pid, SIGKILL);
        if (pidfd >= 0)
            close(pidfd);
        goto out;
    }
    close(pidfd);
    if (m.code & SBX__EXEC_MAIN)
        main_child = pid; /* its end is the sandbox's: no status of its own */
    else
        execs[n_execs++] = (struct exec_slot){.pid = pid, .status_fd = steal_fd(&status_fd)};
out:
    for (int i = 0; i < 3; i++)
        if (sa.stdio[i] >= 0)
            close(sa.stdio[i]);
    if (status_fd >= 0)
        close(status_fd);
    free(strv);
    free(buf);
}

/* A reaped child that was an exec'd process: its returncode to the caller. */
static void exec_reaped(pid_t pid, int returncode)
{
    for (size_t i = 0; i < n_execs; i++) {
        if (execs[i].pid != pid)
            continue;
        sbx_error e = {.code = returncode};
        /* Never block: the caller reads when it likes, and one small
         * message always fits. */
        struct sbx__msg msg = {.type = SBX__MSG_STATUS, .code = e.code};
        (void)send(execs[i].status_fd, &msg, sizeof(msg), MSG_DONTWAIT | MSG_NOSIGNAL);
        close(execs[i].status_fd);
        execs[i] = execs[--n_execs];
        return;
    }
}

void sbx__init_run(const struct sbx__proc_spec *spec, int sync_fd)
{
    sigset_t all;
    int devnull, sigfd;
    bool caller_gone = false;

    /* Block everything before the entrypoint exists, so that no signal and
     * no SIGCHLD can slip in between fork and the wait loop. */
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    reset_signals();
    /* Before anything of the sandbox's runs: nothing inside may attach to
     * init or read the caller's command line from it.  The spec may point
     * into that very memory (a tool passing its own argv), so copy it first. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    spec = spec_copy(spec);
    if (!spec) {
        sbx_error e;
        sbx__error(&e, ENOMEM, "copy the entrypoint's argv and env");
        sbx__msg_send(sync_fd, SBX__MSG_ERROR, &e);
        _exit(127);
    }
    hide_host_cmdline();
    sigfd = signalfd(-1, &all, SFD_CLOEXEC);
    if (sigfd < 0) {
        sbx_error e;
        sbx__error(&e, errno, "signalfd");
        sbx__msg_send(sync_fd, SBX__MSG_ERROR, &e);
        _exit(127);
    }

    if (spec->argv) {
        struct spawn_args sa = {.spec = spec, .close_fds = {-1, sync_fd}};
        sbx_error e = {0};

        if (!spawn_checked(&sa, &main_child, &e)) {
            sbx__msg_send(sync_fd, SBX__MSG_ERROR, &e);
            _exit(127);
        }
    }
    sbx__msg_send(sync_fd, SBX__MSG_READY, NULL);

    /* Init holds nothing of the workload's: not its stdio (so readers see
     * EOF when the entrypoint's output ends), not a privilege. */
    devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0) {
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(devnull, 2);
        close(devnull);
    }
    {
        int keep[2] = {sync_fd, sigfd};
        sbx__close_fds_except(keep, 2);
    }

    for (;;) {
        struct pollfd pfd[2] = {{.fd = sigfd, .events = POLLIN},
                                {.fd = caller_gone ? -1 : sync_fd, .events = POLLIN}};
        struct signalfd_siginfo si;
        int sig;

        if (poll(pfd, 2, -1) < 0)
            continue;
        if (pfd[1].revents & (POLLHUP | POLLERR))
            caller_gone = true; /* its EXEC requests are over; run on */
        else if (pfd[1].revents & POLLIN)
            handle_exec(sync_fd, spec);
        if (!(pfd[0].revents & POLLIN) || read(sigfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
            continue;
        sig = (int)si.ssi_signo;
        if (sig == SIGCHLD) {
            int status;
            pid_t p;

            while ((p = waitpid(-1, &status, WNOHANG)) > 0) {
                if (p == main_child)
                    exit_with(sync_fd, status_to_returncode(status));
                exec_reaped(p, status_to_returncode(status));
            }
            continue;
        }
        if (main_child > 0) {
            if (forwardable(sig))
                kill(main_child, sig);
            continue;
        }
        /* Idle: a stop request from outside the sandbox (si_pid is 0 for a
         * sender in an ancestor pid namespace) ends it; the same signal
         * from a process inside is ignored, as the kernel does for pid 1. */
        if (si.ssi_pid == 0 && si.ssi_code == SI_USER &&
            (sig == SIGTERM || sig == SIGINT || sig == SIGHUP || sig == SIGQUIT))
            exit_with(sync_fd, 128 + sig);
    }
}
