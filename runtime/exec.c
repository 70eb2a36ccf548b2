/* exec.c — running a process inside a running sandbox.
 *
 * The caller forks a helper that joins the sandbox's cgroup and, through the
 * init's pidfd, all of its namespaces at once.  Joining a pid namespace only
 * applies to children, so the helper clones the real process, which is born
 * inside the sandbox's pid namespace.  The helper stays outside it as the
 * process's parent: it reaps the process and exits with its returncode.
 *
 * Why not CLONE_PARENT, making the process the caller's own child?  A dying
 * pid namespace waits until every process in it is reaped, so a sandbox's
 * init could not finish while the caller had not yet reaped an exec'd
 * zombie — a deadlock for any caller that waits for the sandbox first.  The
 * helper reaps at once, whatever the caller does.
 *
 * The helper passes the process's pidfd back over a socket; the process
 * passes its pty master (from the sandbox's own devpts) the same way, or the
 * reason its exec failed.
 */
#include "internal.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <linux/sched.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

enum { MSG_PIDFD = 10, MSG_PTY = 11 };

static void report(int sock, int code, const char *what)
{
    sbx_error e;

    sbx__error(&e, code, "%s", what);
    sbx__msg_send(sock, SBX__MSG_ERROR, &e);
}

/* Inside the sandbox's namespaces: become its root, set up stdio, exec. */
__attribute__((noreturn)) static void exec_child(const sbx_sandbox *sb,
                                                 const struct sbx_exec_config *cfg, int sock,
                                                 int cgroupns_fd)
{
    struct sbx__proc_spec spec = {
        .argv = cfg->argv,
        .env = cfg->env,
        .workdir = cfg->workdir,
        .uid = cfg->uid,
        .gid = cfg->gid,
        .rlimits = sb->rlimits,
        .n_rlimits = sb->n_rlimits,
    };

    /* Born in the sandbox's cgroup (v2), the process joins its cgroup
     * namespace only now: with namespaces as delegation boundaries the
     * kernel refuses CLONE_INTO_CGROUP from inside it, where our own cgroup
     * is out of sight.  (Through an nsfs fd the helper opened: setns by
     * pidfd would need ptrace access to init, which is not dumpable.) */
    if (cgroupns_fd >= 0 && setns(cgroupns_fd, CLONE_NEWCGROUP) < 0) {
        report(sock, errno, "join the sandbox's cgroup namespace");
        _exit(127);
    }

    if (sb->userns && (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)) {
        report(sock, errno, "become root in the sandbox's user namespace");
        _exit(127);
    }
    if (cfg->pty) {
        struct winsize ws = {.ws_row = cfg->rows ? cfg->rows : 24,
                             .ws_col = cfg->cols ? cfg->cols : 80};
        int unlock = 0, master, slave;

        /* /dev/ptmx here is the sandbox's own devpts instance. */
        master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0 || ioctl(master, TIOCSPTLCK, &unlock) < 0) {
            report(sock, errno, "open the sandbox's /dev/ptmx");
            _exit(127);
        }
        slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
        if (slave < 0 || ioctl(slave, TIOCSWINSZ, &ws) < 0) {
            report(sock, errno, "open the pty's terminal side");
            _exit(127);
        }
        if (sbx__send_fd(sock, MSG_PTY, 0, master) < 0)
            _exit(127);
        close(master);
        if (setsid() < 0 || ioctl(slave, TIOCSCTTY, 0) < 0) {
            report(sock, errno, "make the pty the controlling terminal");
            _exit(127);
        }
        for (int i = 0; i < 3; i++)
            if (dup2(slave, i) < 0)
                _exit(127);
        if (slave > 2)
            close(slave);
    } else {
        int fds[3], devnull = -1;

        for (int i = 0; i < 3; i++) {
            int src = cfg->stdio[i];
            if (src < 0) {
                if (devnull < 0)
                    devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
                src = devnull;
            }
            fds[i] = fcntl(src, F_DUPFD_CLOEXEC, 3);
            if (fds[i] < 0) {
                report(sock, errno, "duplicate stdio");
                _exit(127);
            }
        }
        for (int i = 0; i < 3; i++)
            if (dup2(fds[i], i) < 0)
                _exit(127);
        setsid();
    }
    sbx__exec_workload(&spec, sock);
}

/* The helper: joins the cgroup and namespaces, clones the process as the
 * caller's child, hands its pidfd over, and exits. */
__attribute__((noreturn)) static void exec_helper(sbx_sandbox *sb,
                                                  const struct sbx_exec_config *cfg, int sock)
{
    bool born_inside = sb->cg && sb->cgops->clone_into;
    int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET |
                (born_inside ? 0 : CLONE_NEWCGROUP) | (sb->userns ? CLONE_NEWUSER : 0);
    struct clone_args ca = {0};
    int pidfd = -1, cgroupns_fd = -1, r;
    pid_t pid;
    sbx_error e;

    if (born_inside) {
        char path[64];

        snprintf(path, sizeof(path), "/proc/%d/ns/cgroup", (int)sb->pid);
        cgroupns_fd = open(path, O_RDONLY | O_CLOEXEC);
        if (cgroupns_fd < 0) {
            report(sock, errno, "open the sandbox's cgroup namespace");
            _exit(127);
        }
    }
    /* v1: the helper moves itself in (cheap, see v1_attach), and the
     * process inherits the cgroup; v2: the process is born in it. */
    if (!born_inside) {
        r = sb->cgops->attach(sb->cg, getpid(), &e);
        if (r < 0) {
            sbx__msg_send(sock, SBX__MSG_ERROR, &e);
            _exit(127);
        }
    }
    if (setns(sb->pidfd, flags) < 0) {
        report(sock, errno, "join the sandbox's namespaces");
        _exit(127);
    }
    ca.flags = CLONE_PIDFD;
    ca.pidfd = (uint64_t)(uintptr_t)&pidfd;
    ca.exit_signal = SIGCHLD;
    if (born_inside) {
        ca.flags |= CLONE_INTO_CGROUP;
        ca.cgroup = (uint64_t)sb->cg->clone_fd;
    }
    pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
    if (pid < 0) {
        report(sock, errno, "clone the exec'd process");
        _exit(127);
    }
    if (pid == 0)
        exec_child(sb, cfg, sock, cgroupns_fd);
    sbx__send_fd(sock, MSG_PIDFD, pid, pidfd);
    /* The helper lives as long as the process: it must not hold a copy of
     * any of the caller's fds (another process's pipe, a listening socket). */
    syscall(SYS_close_range, 0, ~0U, 0);
    for (;;) {
        siginfo_t si = {0};
        if (waitid(P_PID, (id_t)pid, &si, WEXITED) < 0) {
            if (errno == EINTR)
                continue;
            _exit(127);
        }
        _exit(si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status);
    }
}

int sbx_sandbox_exec(sbx_sandbox *sb, const struct sbx_exec_config *cfg, struct sbx_process *ret,
                     sbx_error *err)
{
    _cleanup_close_ int pidfd = -1, pty = -1;
    int sv[2], r = 0;
    pid_t helper, pid = -1;
    bool failed = false;

    if (!cfg->argv || !cfg->argv[0])
        return sbx__error(err, EINVAL, "exec in `%s`: empty argv", sb->id);
    if (cfg->workdir && cfg->workdir[0] != '/')
        return sbx__error(err, EINVAL, "exec in `%s`: workdir `%s` is not absolute", sb->id,
                          cfg->workdir);
    if (sbx_sandbox_poll(sb, NULL, NULL) != 0 || sb->terminated)
        return sbx__error(err, ESRCH, "exec in `%s`: the sandbox has finished", sb->id);
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return sbx__error(err, errno, "exec in `%s`: socketpair", sb->id);
    helper = fork();
    if (helper < 0) {
        r = sbx__error(err, errno, "exec in `%s`: fork", sb->id);
        close(sv[0]);
        close(sv[1]);
        return r;
    }
    if (helper == 0) {
        close(sv[0]);
        exec_helper(sb, cfg, sv[1]);
    }
    close(sv[1]);

    /* Messages until EOF, which comes when the helper has exited and the
     * process's execve closed the last copy of the socket. */
    for (;;) {
        struct sbx__msg m;
        int fd, n = sbx__recv_msg(sv[0], &m, &fd);

        if (n <= 0) {
            if (n < 0 && !failed) {
                failed = true;
                r = sbx__error(err, -n, "exec in `%s`: read the helper's report", sb->id);
            }
            break;
        }
        if (m.type == MSG_PIDFD && fd >= 0 && pidfd < 0) {
            pidfd = fd;
            pid = m.code;
        } else if (m.type == MSG_PTY && fd >= 0 && pty < 0) {
            pty = fd;
        } else {
            if (fd >= 0)
                close(fd);
            if (m.type == SBX__MSG_ERROR && !failed) {
                failed = true;
                m.message[sizeof(m.message) - 1] = '\0';
                r = sbx__error(err, m.code ? m.code : EIO, "exec in `%s`", sb->id);
                if (err)
                    snprintf(err->message, sizeof(err->message), "exec `%s` in `%s`: %s",
                             cfg->argv[0], sb->id, m.message);
            }
        }
    }
    close(sv[0]);
    if (!failed && pidfd < 0) {
        failed = true;
        r = sbx__error(err, ESRCH, "exec in `%s`: the sandbox has finished", sb->id);
    }
    if (!failed && cfg->pty && pty < 0) {
        failed = true;
        r = sbx__error(err, EIO, "exec in `%s`: no pty received", sb->id);
    }
    if (failed) {
        if (pidfd >= 0)
            syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
        while (waitpid(helper, NULL, 0) < 0 && errno == EINTR)
            ;
        return r;
    }
    ret->status_pidfd = (int)syscall(SYS_pidfd_open, helper, 0);
    if (ret->status_pidfd < 0) {
        r = sbx__error(err, errno, "exec in `%s`: pidfd_open", sb->id);
        syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
        while (waitpid(helper, NULL, 0) < 0 && errno == EINTR)
            ;
        return r;
    }
    ret->status_pid = helper;
    ret->pid = pid;
    ret->pidfd = steal_fd(&pidfd);
    ret->pty_master = steal_fd(&pty);
    return 0;
}

int sbx_process_wait(struct sbx_process *p, int timeout_ms, int *ret_returncode, sbx_error *err)
{
    siginfo_t si = {0};

    if (p->status_pidfd < 0)
        return sbx__error(err, EBADF, "wait for pid %d: already reaped", p->pid);
    if (timeout_ms != 0) {
        struct pollfd pf = {.fd = p->status_pidfd, .events = POLLIN};
        int n;
        do
            n = poll(&pf, 1, timeout_ms);
        while (n < 0 && errno == EINTR);
        if (n < 0)
            return sbx__error(err, errno, "poll pid %d", p->pid);
        if (n == 0)
            return 0;
    }
    if (waitid(P_PIDFD, (id_t)p->status_pidfd, &si, WEXITED | WNOHANG) < 0)
        return sbx__error(err, errno, "wait for pid %d", p->pid);
    if (si.si_pid == 0)
        return 0;
    /* The helper exits with the process's returncode; killed itself (by a
     * terminate or an OOM kill of the whole sandbox), it reports 128+N too. */
    *ret_returncode = si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
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
