/* exec.c — running a process inside a running sandbox.
 *
 * The sandbox's init starts it.  The caller sends init an EXEC request on
 * the setup socket (which stays open as its line to init): the spec (argv,
 * env, workdir, user, pty) in a memfd, a fresh status socket, and the stdio
 * fds.  Init spawns the process as its own child, exactly as it spawned the
 * entrypoint, so the process inherits the sandbox's namespaces, cgroup,
 * capabilities, no_new_privs and seccomp filter at no cost: nothing joins a
 * namespace, no filter is compiled again (that alone took a quarter of a
 * millisecond), nothing is moved between cgroups.  Init answers on the
 * status socket with the process's pidfd once it has exec'd (or with why it
 * could not), a pty's master comes the same way from the process itself,
 * and when init reaps the process it sends its returncode there.
 *
 * init reaps at once, so a dying pid namespace never waits for the caller
 * (the reason a process cannot simply be the caller's own child).  When the
 * sandbox ends first, the status socket closes without a returncode: the
 * process was killed with everything else (137).
 */
#include "internal.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <termios.h>

/* Writes the spec into a new memfd; returns it, or -errno. */
static int spec_memfd(const struct sbx_exec_config *cfg)
{
    struct sbx__exec_wire w = {
        .magic = SBX__EXEC_MAGIC,
        .uid = cfg->uid,
        .gid = cfg->gid,
        .rows = cfg->rows,
        .cols = cfg->cols,
        .has_workdir = cfg->workdir != NULL,
    };
    size_t size = sizeof(w), off;
    _cleanup_free_ char *buf = NULL;
    int fd;

    for (; cfg->argv[w.argc]; w.argc++)
        size += strlen(cfg->argv[w.argc]) + 1;
    for (; cfg->env && cfg->env[w.envc]; w.envc++)
        size += strlen(cfg->env[w.envc]) + 1;
    if (cfg->workdir)
        size += strlen(cfg->workdir) + 1;
    if (size > SBX__EXEC_MAX_SPEC)
        return -E2BIG;
    buf = malloc(size);
    if (!buf)
        return -ENOMEM;
    memcpy(buf, &w, sizeof(w));
    off = sizeof(w);
#define PUT(str)                                                                                   \
    do {                                                                                           \
        size_t _n = strlen(str) + 1;                                                               \
        memcpy(buf + off, str, _n);                                                                \
        off += _n;                                                                                 \
    } while (0)
    for (uint32_t i = 0; i < w.argc; i++)
        PUT(cfg->argv[i]);
    for (uint32_t i = 0; i < w.envc; i++)
        PUT(cfg->env[i]);
    if (cfg->workdir)
        PUT(cfg->workdir);
#undef PUT
    fd = memfd_create("sbx-exec", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    for (size_t done = 0; done < size;) {
        ssize_t n = write(fd, buf + done, size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            close(fd);
            return -e;
        }
        done += (size_t)n;
    }
    return fd;
}

static int send_exec(int sync_fd, const struct sbx_exec_config *cfg, int memfd, int status_fd)
{
    struct sbx__msg m = {.type = SBX__MSG_EXEC,
                         .code = (cfg->pty ? SBX__EXEC_PTY : 0) |
                                 (cfg->entrypoint ? SBX__EXEC_MAIN : 0)};
    struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
    union {
        char buf[CMSG_SPACE(sizeof(int) * 5)];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf};
    int fds[5] = {memfd, status_fd}, n = 2;
    struct cmsghdr *c;

    for (int i = 0; i < 3 && !cfg->pty; i++)
        if (cfg->stdio[i] >= 0) {
            m.code |= 1 << i;
            fds[n++] = cfg->stdio[i];
        }
    memset(&u, 0, sizeof(u));
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
    c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)n);
    while (sendmsg(sync_fd, &mh, MSG_NOSIGNAL) < 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}

/* PIDFD_GET_INFO (Linux 6.13), its first version; older headers lack it. */
struct sbx__pidfd_info {
    uint64_t mask, cgroupid;
    uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid, spare0;
};
#define SBX__PIDFD_GET_INFO _IOWR(0xFF, 11, struct sbx__pidfd_info)
#define SBX__PIDFD_INFO_PID 1ULL

/* The pid of a pidfd's process in our own pid namespace: one ioctl where
 * the kernel has it, else fdinfo's Pid (an open, two reads and a close). */
static pid_t pidfd_pid(int pidfd)
{
    struct sbx__pidfd_info info = {.mask = SBX__PIDFD_INFO_PID};
    char path[64], buf[1024], *p;

    if (ioctl(pidfd, SBX__PIDFD_GET_INFO, &info) == 0 && (info.mask & SBX__PIDFD_INFO_PID))
        return (pid_t)info.pid;
    snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
    if (sbx__read_file_at(AT_FDCWD, path, buf, sizeof(buf), NULL) < 0)
        return -1;
    p = strstr(buf, "\nPid:");
    return p ? (pid_t)strtol(p + 5, NULL, 10) : -1;
}

int sbx_sandbox_exec_begin(sbx_sandbox *sb, const struct sbx_exec_config *cfg, int *ret_pending,
                           sbx_error *err)
{
    _cleanup_close_ int memfd = -1;
    int sv[2], r;

    *ret_pending = -1;
    if (!cfg->argv || !cfg->argv[0])
        return sbx__error(err, EINVAL, "exec in `%s`: empty argv", sb->id);
    if (cfg->workdir && cfg->workdir[0] != '/')
        return sbx__error(err, EINVAL, "exec in `%s`: workdir `%s` is not absolute", sb->id,
                          cfg->workdir);
    if (sbx_sandbox_poll(sb, NULL, NULL) != 0 || sb->terminated || sb->sync_fd < 0)
        return sbx__error(err, ESRCH, "exec in `%s`: the sandbox has finished", sb->id);
    memfd = spec_memfd(cfg);
    if (memfd < 0)
        return sbx__error(err, -memfd, "exec in `%s`: write the request", sb->id);
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return sbx__error(err, errno, "exec in `%s`: socketpair", sb->id);
    r = send_exec(sb->sync_fd, cfg, memfd, sv[1]);
    close(sv[1]);
    if (r < 0) {
        close(sv[0]);
        if (r == -EPIPE || r == -ECONNRESET)
            return sbx__error(err, ESRCH, "exec in `%s`: the sandbox has finished", sb->id);
        return sbx__error(err, -r, "exec in `%s`: send the request to init", sb->id);
    }
    *ret_pending = sv[0];
    return 0;
}

int sbx_sandbox_exec_end(sbx_sandbox *sb, const struct sbx_exec_config *cfg, int pending,
                         struct sbx_process *ret, sbx_error *err)
{
    _cleanup_close_ int pidfd = -1, pty = -1;
    int r;

    /* A pty's master (from the process, before it execs), then the pidfd
     * once it has exec'd, or why it could not; EOF: init is gone. */
    while (pidfd < 0) {
        struct sbx__msg m;
        int fd, n = sbx__recv_msg(pending, &m, &fd);

        if (n <= 0) {
            close(pending);
            if (n == 0)
                return sbx__error(err, ESRCH, "exec in `%s`: the sandbox has finished", sb->id);
            return sbx__error(err, -n, "exec in `%s`: read init's answer", sb->id);
        }
        if (m.type == SBX__MSG_PIDFD && fd >= 0) {
            pidfd = fd;
        } else if (m.type == SBX__MSG_PTY && fd >= 0 && pty < 0) {
            pty = fd;
        } else {
            if (fd >= 0)
                close(fd);
            if (m.type == SBX__MSG_ERROR) {
                close(pending);
                m.message[sizeof(m.message) - 1] = '\0';
                r = sbx__error(err, m.code > 0 ? m.code : EIO, "exec in `%s`", sb->id);
                if (err)
                    snprintf(err->message, sizeof(err->message), "exec `%s` in `%s`: %s",
                             cfg->argv[0], sb->id, m.message);
                return r;
            }
        }
    }
    if (cfg->pty && pty < 0) {
        syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
        close(pending);
        return sbx__error(err, EIO, "exec in `%s`: no pty received", sb->id);
    }
    ret->pid = pidfd_pid(pidfd);
    ret->pidfd = steal_fd(&pidfd);
    ret->pty_master = steal_fd(&pty);
    ret->status_pid = -1;
    ret->status_pidfd = pending;
    return 0;
}

int sbx_sandbox_exec(sbx_sandbox *sb, const struct sbx_exec_config *cfg, struct sbx_process *ret,
                     sbx_error *err)
{
    int pending, r = sbx_sandbox_exec_begin(sb, cfg, &pending, err);

    return r < 0 ? r : sbx_sandbox_exec_end(sb, cfg, pending, ret, err);
}

int sbx_process_wait(struct sbx_process *p, int timeout_ms, int *ret_returncode, sbx_error *err)
{
    struct sbx__msg m;
    ssize_t n;

    if (p->status_pidfd < 0)
        return sbx__error(err, EBADF, "wait for pid %d: already reaped", p->pid);
    if (timeout_ms != 0) {
        struct pollfd pf = {.fd = p->status_pidfd, .events = POLLIN};
        int k;
        do
            k = poll(&pf, 1, timeout_ms);
        while (k < 0 && errno == EINTR);
        if (k < 0)
            return sbx__error(err, errno, "poll pid %d", p->pid);
        if (k == 0)
            return 0;
    }
    do
        n = recv(p->status_pidfd, &m, sizeof(m), MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    if (n == (ssize_t)sizeof(m) && m.type == SBX__MSG_STATUS)
        *ret_returncode = m.code;
    else if (n >= 0)
        /* EOF without a returncode: the sandbox ended first, and the
         * process was killed with everything in it. */
        *ret_returncode = 128 + SIGKILL;
    else
        return sbx__error(err, errno, "wait for pid %d", p->pid);
    close(p->status_pidfd);
    p->status_pidfd = -1;
    if (p->pidfd >= 0)
        close(p->pidfd);
    p->pidfd = -1;
    return 1;
}

int sbx_pty_resize(int pty_master, unsigned short rows, unsigned short cols, sbx_error *err)
{
    struct winsize ws = {.ws_row = rows, .ws_col = cols};

    if (ioctl(pty_master, TIOCSWINSZ, &ws) < 0)
        return sbx__error(err, errno, "resize pty to %ux%u", rows, cols);
    return 0;
}
