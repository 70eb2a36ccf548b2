/* monitor-zygote.c — `sandboxd-monitor --zygote FD`: a monitor process the
 * daemon starts ahead of time, which forks a fresh monitor per sandbox.
 *
 * Starting a monitor as a new program costs the daemon a fork of its own
 * (larger) memory in uv_spawn, and the monitor an exec, the dynamic linking
 * of five libraries, the binding of every function it calls, and two forks
 * to detach: about 2 ms of a create's critical path.  The zygote has paid
 * for all of it once.  It keeps one fork of itself waiting, the spare: the
 * spare reads the next request from the control socket and becomes that
 * sandbox's monitor, and the zygote then forks the next spare, so that no
 * fork is on the critical path either.  Every monitor still runs in a
 * process of its own and nothing in the zygote is of any sandbox: the
 * zygote never reads a request (spares do, each in its own copy), holds
 * its control socket and nothing else, and never makes namespaces or
 * cgroups (monitors do, single-threaded, as a spawned monitor does).  It
 * stays in the daemon's cgroup.
 *
 * The zygote is the daemon's child and ends with it: the daemon's end of
 * the control socket closing (the daemon exited or was killed) or the
 * parent-death signal.  A waiting spare ends with the zygote (parent-death
 * signal too); a spare that took a request clears that first, and, a
 * monitor from then on, outlives both.  Spares and monitors are the
 * zygote's children, reaped by the kernel (SIGCHLD ignored); when the
 * zygote goes they are re-parented like any orphan and run on, exactly as
 * monitors started by a spawn do.  The protocol is in monitor-proto.h
 * ("Zygote"). */
#include "monitor.h"
#include "monitor-proto.h"
#include "sbx.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The monitor's command line as `ps` and `pkill -f` show it: what a spawned
 * monitor's would be.  With CAP_SYS_RESOURCE the kernel is pointed at a
 * buffer of ours (PR_SET_MM); without, it is written over the zygote's own
 * argv and environment, a block the zygote set aside at its start
 * (setproctitle's way: the kernel reads a command line on into the
 * environment when its last NUL was overwritten). */
static char title_buf[8192];
static char *title_area;
static size_t title_room;

/* At the zygote's start: the argv-and-environment block becomes free to
 * write over once the environment lives elsewhere. */
static void title_init(char **argv)
{
    extern char **environ;
    char *end;
    size_t n = 0;
    char **env;

    if (!argv || !argv[0])
        return;
    end = argv[0] + strlen(argv[0]) + 1;
    for (int i = 1; argv[i] && argv[i] == end; i++)
        end = argv[i] + strlen(argv[i]) + 1;
    while (environ[n])
        n++;
    env = calloc(n + 1, sizeof(*env));
    if (!env)
        return;
    for (size_t i = 0; i < n; i++) {
        if (environ[i] == end)
            end = environ[i] + strlen(environ[i]) + 1;
        env[i] = strdup(environ[i]);
        if (!env[i]) {
            while (i-- > 0)
                free(env[i]);
            free(env);
            return;
        }
    }
    environ = env;
    title_area = argv[0];
    title_room = (size_t)(end - argv[0]);
}

static void set_title(const struct monitor_args *a)
{
    const char *parts[] = {"sandboxd-monitor",   "--id",     a->id,         "--spec",     a->spec,
                           "--run-dir",          a->run_dir, "--state-dir", a->state_dir, "--log",
                           a->log ? a->log : "-"};
    size_t len = 0;
    unsigned long start = (unsigned long)title_buf;

    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        size_t n = strlen(parts[i]) + 1;
        if (len + n > sizeof(title_buf))
            break;
        memcpy(title_buf + len, parts[i], n);
        len += n;
    }
    /* The kernel wants start <= end at every step: which one moves first
     * depends on where the old command line was. */
    if (prctl(PR_SET_MM, PR_SET_MM_ARG_START, start, 0, 0) == 0) {
        if (prctl(PR_SET_MM, PR_SET_MM_ARG_END, start + len, 0, 0) == 0)
            return;
    } else if (prctl(PR_SET_MM, PR_SET_MM_ARG_END, start + len, 0, 0) == 0 &&
               prctl(PR_SET_MM, PR_SET_MM_ARG_START, start, 0, 0) == 0) {
        return;
    }
    if (!title_area || title_room < 2)
        return;
    /* One string, spaces between the words, cut to the room there is. */
    for (size_t i = 0; i + 1 < len; i++)
        if (title_buf[i] == '\0')
            title_buf[i] = ' ';
    memset(title_area, 0, title_room);
    memcpy(title_area, title_buf, len < title_room ? len : title_room - 1);
}

/* A request's string member; NULL when missing or not a string. */
static const char *member(json_t *req, const char *key)
{
    return json_string_value(json_object_get(req, key));
}

/* Receives one request and its fd.  Returns 1 with *ret_req and *ret_fd,
 * 0 at EOF, -errno on error; a malformed request is refused here (logged,
 * its fd closed) and the next one read. */
static int receive(int control_fd, json_t **ret_req, int *ret_fd)
{
    char buf[SBXD_ZYGOTE_MAX_REQUEST + 1];
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(sizeof(int))];
    } ctl;

    for (;;) {
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf) - 1};
        struct msghdr mh = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl, .msg_controllen = sizeof(ctl)};
        struct cmsghdr *cm;
        json_error_t jerr;
        const char *why;
        json_t *req;
        ssize_t n;
        int fd = -1;

        n = recvmsg(control_fd, &mh, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return 0;
        for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
                cm->cmsg_len >= CMSG_LEN(sizeof(int))) {
                /* Every fd that came is ours to close; the first is used. */
                int *fds = (int *)CMSG_DATA(cm);
                size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < count; i++) {
                    if (fd < 0)
                        fd = fds[i];
                    else
                        close(fds[i]);
                }
            }
        buf[n] = '\0';
        req = json_loadb(buf, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
        if (fd >= 0 && !(mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) && json_is_object(req) &&
            member(req, "id") && member(req, "spec") && member(req, "run_dir") &&
            member(req, "state_dir")) {
            *ret_req = req;
            *ret_fd = fd;
            return 1;
        }
        if (fd < 0)
            why = "no connection passed";
        else if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
            why = "too long";
        else if (!json_is_object(req))
            why = jerr.text;
        else
            why = "a member is missing";
        mlog("zygote: refused a request: %s", why);
        json_decref(req);
        if (fd >= 0)
            close(fd);
    }
}

#define LOOPBACK_POOL 2 /* loopback-only namespaces made ahead, on a network */

/* A fresh fork of the zygote waits for the next request itself and becomes
 * its monitor: the fork is paid for before the request comes, not after.
 * Returns like zygote_serve() (1 with *ret filled); exits when the daemon
 * is gone. */
static int spare_serve(int control_fd, int taken_fd, pid_t zygote, bool on_network,
                       sbx_netpool *pool, sbx_netpool *pool_lo, struct monitor_args *ret,
                       json_t **ret_hold)
{
    json_t *req = NULL;
    int fd = -1, netpool_fd, netpool_lo_fd, r;

    /* While it waits it is part of the zygote, and goes with it. */
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != zygote)
        _exit(0);
    r = receive(control_fd, &req, &fd);
    if (r <= 0) {
        if (r < 0)
            mlog("zygote: read the control socket: %s", strerror(-r));
        _exit(r < 0 ? 1 : 0);
    }
    /* A monitor from here on: it outlives the zygote, and holds nothing of
     * it but this request. */
    prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
    (void)!write(taken_fd, "t", 1);
    netpool_fd = pool ? sbx_netpool_detach(pool) : -1;
    netpool_lo_fd = pool_lo ? sbx_netpool_detach(pool_lo) : -1;
    close(taken_fd);
    close(control_fd);
    signal(SIGCHLD, SIG_DFL);
    *ret = (struct monitor_args){
        .id = member(req, "id"),
        .spec = member(req, "spec"),
        .run_dir = member(req, "run_dir"),
        .state_dir = member(req, "state_dir"),
        .log = member(req, "log"),
        .client_fd = fd,
        .from_zygote = true,
        .netpool_fd = netpool_fd,
        /* Off the network the one pool is loopback-only. */
        .netpool_lo_fd = pool_lo ? netpool_lo_fd : (on_network ? -1 : netpool_fd),
    };
    *ret_hold = req;
    set_title(ret);
    return 1;
}

/* Waits up to timeout_ms (-1: forever) for fd to be readable or the daemon
 * to close the control socket.  Returns 1 readable, 0 timeout, -1 daemon
 * gone. */
static int wait_for(int fd, int control_fd, int timeout_ms)
{
    for (;;) {
        struct pollfd pf[2] = {{.fd = control_fd, .events = 0}, {.fd = fd, .events = POLLIN}};
        int n = poll(pf, fd >= 0 ? 2 : 1, timeout_ms);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || (pf[0].revents & (POLLHUP | POLLERR | POLLNVAL)))
            return -1;
        if (n == 0)
            return 0;
        if (fd >= 0 && pf[1].revents)
            return 1;
    }
}

int zygote_serve(int control_fd, char **argv, const char *run_dir, unsigned netpool_size,
                 const struct sbx_network *net, struct monitor_args *ret, json_t **ret_hold)
{
    sbx_netpool *pool = NULL, *pool_lo = NULL;
    pid_t self = getpid();
    int r;

    title_init(argv);
    /* Spares and monitors are reaped by the kernel. */
    signal(SIGCHLD, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    /* Gone with the daemon even if the control socket were held open. */
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() == 1)
        return 0;
    /* Network namespaces made ahead, by a helper of ours (it goes with us:
     * its parent-death signal, and EOF once every monitor has closed its
     * copy of the socket).  Without one, monitors make their own. */
    if (netpool_size > 0) {
        sbx_error err = {0};
        if (sbx_netpool_start(netpool_size, net, &pool, &err) < 0)
            mlog("zygote: network namespace pool: %s", err.message);
        /* On a network, sandboxes that block it take loopback-only ones:
         * made on a create's path, a namespace costs ~0.6 ms of kernel time,
         * and as much again in a kernel worker when it goes. */
        if (net && sbx_netpool_start(LOOPBACK_POOL, NULL, &pool_lo, &err) < 0)
            mlog("zygote: loopback namespace pool: %s", err.message);
    }
    /* What each monitor's create would look up first, looked up once: the
     * spares are forks of us. */
    {
        sbx_error err = {0};
        if (sbx_prepare(run_dir, &err) < 0)
            mlog("zygote: prepare: %s (each monitor will)", err.message);
    }

    /* One spare at a time; the zygote itself never reads a request. */
    for (;;) {
        int taken[2];
        char c = 0;
        pid_t pid;

        if (pipe2(taken, O_CLOEXEC) < 0) {
            r = -errno;
            mlog("zygote: pipe: %s", strerror(errno));
            goto out;
        }
        pid = fork();
        if (pid == 0) {
            close(taken[0]);
            return spare_serve(control_fd, taken[1], self, net != NULL, pool, pool_lo, ret,
                               ret_hold);
        }
        close(taken[1]);
        if (pid < 0) {
            mlog("zygote: fork a spare: %s", strerror(errno));
            close(taken[0]);
            if (wait_for(-1, control_fd, 1000) < 0)
                break;
            continue;
        }
        /* Until the spare becomes a monitor ("t", then EOF) or ends. */
        r = wait_for(taken[0], control_fd, -1);
        if (r > 0 && read(taken[0], &c, 1) != 1)
            c = 0;
        close(taken[0]);
        if (r < 0)
            break;
        /* A spare that ended untaken: not in a tight loop. */
        if (c != 't' && wait_for(-1, control_fd, 100) < 0)
            break;
    }
    r = 0;
out:
    sbx_netpool_stop(pool);
    sbx_netpool_stop(pool_lo);
    return r;
}
