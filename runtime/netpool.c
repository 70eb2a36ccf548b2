/* netpool.c — network namespaces made ahead of time.
 *
 * A new network namespace is the costliest namespace to make (its loopback
 * device alone registers a dozen sysfs groups and per-protocol state): about
 * 0.6 ms, a fifth of a sandbox's start.  A pool helper process makes them
 * before they are asked for and hands each one over as a pair of fds:
 *
 *   net_fd    the namespace (/proc/thread-self/ns/net), loopback up,
 *             ip_unprivileged_port_start 0 and ping_group_range open,
 *   sysfs_fd  a detached read-only sysfs mount made inside it (fsmount), for
 *             the sandbox's /sys: a sysfs shows the devices of the namespace
 *             it was mounted from, and only a process privileged over that
 *             namespace's owner may mount one.
 *
 * The namespaces belong to the initial user namespace, not to the sandbox's:
 * the sandbox's root holds no capability over its network.  It cannot
 * reconfigure its interfaces, addresses, routes or sysctls, nor open raw or
 * packet sockets (CAP_NET_RAW); binding ports below 1024 and ICMP echo
 * sockets work through the two sysctls above.  That is less than a namespace
 * the sandbox owns gives it, and what a network set up from outside (bridge,
 * veth, firewall: see the networking docs) wants anyway.
 *
 * Protocol on the SOCK_SEQPACKET pair: the helper starts with `size`
 * credits and makes one namespace per credit, each sent as one message
 * carrying the two fds; the consumer sends a one-byte message (a new
 * credit) when it closes a namespace it took, once the sandbox holds it.  At EOF the helper exits,
 * and the kernel frees the namespaces still in flight.
 */
#include "internal.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/mount.h>
#include <linux/sched.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* One namespace's message: a marker byte, and the two fds. */
#define NETPOOL_MSG 'N'

struct sbx_netpool {
    pid_t pid;
    int pidfd;
    int sock;
};

/* A read-only sysfs of the calling thread's network namespace, detached. */
static int sysfs_mount(sbx_error *err)
{
    _cleanup_close_ int fs = (int)syscall(SYS_fsopen, "sysfs", FSOPEN_CLOEXEC);
    int mnt;

    if (fs < 0)
        return sbx__error(err, errno, "fsopen sysfs");
    if (syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        return sbx__error(err, errno, "create a sysfs");
    mnt =
        (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC,
                     MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
    if (mnt < 0)
        return sbx__error(err, errno, "fsmount sysfs");
    return mnt;
}

int sbx__netns_make(struct sbx_netns *ret, const struct sbx_network *net, int host_netns,
                    sbx_error *err)
{
    static const struct {
        const char *path, *value;
    } sysctls[] = {
        /* What CAP_NET_BIND_SERVICE and CAP_NET_RAW would give in a
         * namespace the sandbox owned (Docker sets the first likewise). */
        {"/proc/sys/net/ipv4/ip_unprivileged_port_start", "0"},
        {"/proc/sys/net/ipv4/ping_group_range", "0 2147483647"},
    };
    _cleanup_close_ int ns = -1, sysfs = -1;
    int r;

    if (unshare(CLONE_NEWNET) < 0)
        return sbx__error(err, errno, "unshare a network namespace");
    if ((r = sbx__loopback_up(err)) < 0)
        return r;
    for (size_t i = 0; i < SBX_ARRAY_SIZE(sysctls); i++)
        if ((r = sbx__write_file(sysctls[i].path, sysctls[i].value, err)) < 0)
            return r;
    sysfs = sysfs_mount(err);
    if (sysfs < 0)
        return sysfs;
    ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (ns < 0)
        return sbx__error(err, errno, "open the new network namespace");
    ret->addr = 0;
    if (net && (r = sbx__veth_attach(net, host_netns, &ret->addr, err)) < 0)
        return r;
    ret->net_fd = steal_fd(&ns);
    ret->sysfs_fd = steal_fd(&sysfs);
    ret->pool_fd = -1;
    return 0;
}

/* One namespace's message: the marker and eth0's address, with the fds. */
struct netns_msg {
    char marker;
    uint32_t addr;
} __attribute__((packed));

int sbx_netns_make(const struct sbx_network *net, struct sbx_netns *ret, sbx_error *err)
{
    _cleanup_close_ int own = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    int r;

    if (own < 0)
        return sbx__error(err, errno, "open our own network namespace");
    r = sbx__netns_make(ret, net, own, err);
    if (setns(own, CLONE_NEWNET) < 0) {
        /* Cannot happen (we are root where we came from); carrying on in
         * the new namespace would be wrong. */
        sbx__error(err, errno, "return to our own network namespace");
        abort();
    }
    return r;
}

static int send_netns(int sock, const struct sbx_netns *ns)
{
    struct netns_msg msg = {.marker = NETPOOL_MSG, .addr = ns->addr};
    struct iovec iov = {.iov_base = &msg, .iov_len = sizeof(msg)};
    union {
        char buf[CMSG_SPACE(sizeof(int) * 2)];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
    struct cmsghdr *c;
    int fds[2] = {ns->net_fd, ns->sysfs_fd};

    memset(&u, 0, sizeof(u));
    c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(fds));
    memcpy(CMSG_DATA(c), fds, sizeof(fds));
    while (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}

int sbx_netpool_serve(int sock, unsigned size, const struct sbx_network *net)
{
    unsigned credits = size;
    /* The namespace the veths' host ends go to: ours at the start. */
    _cleanup_close_ int host = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);

    for (;;) {
        char c;
        ssize_t n;

        while (credits > 0) {
            struct sbx_netns ns;
            sbx_error e;
            int r = sbx__netns_make(&ns, net, host, &e);

            if (r < 0) {
                /* Out of memory or of a namespace limit: the consumer makes
                 * its own meanwhile.  Try again on the next credit. */
                fprintf(stderr, "sbx-netpool: %s\n", e.message);
                break;
            }
            r = send_netns(sock, &ns);
            sbx_netns_close(&ns);
            if (r < 0)
                return r == -EPIPE || r == -ECONNRESET ? 0 : r;
            credits--;
        }
        do
            n = recv(sock, &c, 1, 0);
        while (n < 0 && errno == EINTR);
        if (n == 0)
            return 0; /* the consumer is gone */
        if (n < 0)
            return -errno;
        credits++;
    }
}

int sbx_netpool_take(int sock, struct sbx_netns *ret, sbx_error *err)
{
    struct netns_msg msg = {0};
    struct iovec iov = {.iov_base = &msg, .iov_len = sizeof(msg)};
    union {
        char buf[CMSG_SPACE(sizeof(int) * 2)];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
    struct cmsghdr *c;
    int fds[2];
    ssize_t n;

    do
        n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return -EAGAIN;
    if (n < 0)
        return sbx__error(err, errno, "receive a network namespace from the pool");
    if (n == 0)
        return sbx__error(err, EPIPE, "the network namespace pool has stopped");
    c = CMSG_FIRSTHDR(&mh);
    if (n != (ssize_t)sizeof(msg) || msg.marker != NETPOOL_MSG || !c ||
        c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
        c->cmsg_len != CMSG_LEN(sizeof(fds))) {
        if (c && c->cmsg_type == SCM_RIGHTS) {
            size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < k; i++)
                close(((int *)(void *)CMSG_DATA(c))[i]);
        }
        return sbx__error(err, EPROTO, "malformed message from the network namespace pool");
    }
    memcpy(fds, CMSG_DATA(c), sizeof(fds));
    ret->net_fd = fds[0];
    ret->sysfs_fd = fds[1];
    ret->pool_fd = sock;
    ret->addr = msg.addr;
    return 0;
}

void sbx_netns_close(struct sbx_netns *ns)
{
    char credit = 1;

    if (!ns)
        return;
    if (ns->net_fd >= 0)
        close(ns->net_fd);
    if (ns->sysfs_fd >= 0)
        close(ns->sysfs_fd);
    /* The pool makes the next namespace only now: making one takes a core
     * for over half a millisecond in the kernel, where it cannot be
     * preempted, and while a sandbox is being created both cores are
     * better spent on it.  The helper may be gone: the next take says so. */
    if (ns->pool_fd >= 0)
        (void)send(ns->pool_fd, &credit, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    ns->net_fd = ns->sysfs_fd = ns->pool_fd = -1;
    ns->addr = 0;
}

int sbx_netpool_start(unsigned size, const struct sbx_network *net, sbx_netpool **ret,
                      sbx_error *err)
{
    struct clone_args ca = {0};
    int sv[2], pidfd = -1;
    sbx_netpool *p;
    pid_t pid;

    if (size == 0 || size > SBX_NETPOOL_MAX)
        return sbx__error(err, EINVAL, "network namespace pool size %u is not in 1..%d", size,
                          SBX_NETPOOL_MAX);
    p = calloc(1, sizeof(*p));
    if (!p)
        return sbx__error(err, ENOMEM, "allocate a network namespace pool");
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        free(p);
        return sbx__error(err, errno, "socketpair for the network namespace pool");
    }
    ca.flags = CLONE_PIDFD;
    ca.pidfd = (uint64_t)(uintptr_t)&pidfd;
    ca.exit_signal = SIGCHLD;
    pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
    if (pid < 0) {
        int e = errno;
        close(sv[0]);
        close(sv[1]);
        free(p);
        return sbx__error(err, e, "fork the network namespace pool");
    }
    if (pid == 0) {
        int keep = sv[1];

        /* Ends with its consumer, even one killed without closing. */
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        prctl(PR_SET_NAME, "sbx-netpool", 0, 0, 0);
        /* Background work: the CPU goes to sandboxes starting now first. */
        {
            struct sched_param sp = {0};
            (void)sched_setscheduler(0, SCHED_IDLE, &sp);
        }
        sbx__close_fds_except(&keep, 1);
        for (int sig = 1; sig < NSIG; sig++)
            if (sig != SIGKILL && sig != SIGSTOP)
                signal(sig, SIG_DFL);
        _exit(sbx_netpool_serve(sv[1], size, net) < 0 ? 1 : 0);
    }
    close(sv[1]);
    p->pid = pid;
    p->pidfd = pidfd;
    p->sock = sv[0];
    *ret = p;
    return 0;
}

int sbx_netpool_detach(sbx_netpool *p)
{
    int sock = p->sock;

    close(p->pidfd);
    free(p);
    return sock;
}

int sbx_netpool_fd(const sbx_netpool *p)
{
    return p->sock;
}

void sbx_netpool_stop(sbx_netpool *p)
{
    siginfo_t si;

    if (!p)
        return;
    close(p->sock);
    /* Not EOF: forked consumers may hold copies of the socket.  The kernel
     * frees a namespace half made or in flight like any other. */
    (void)syscall(SYS_pidfd_send_signal, p->pidfd, SIGKILL, NULL, 0);
    while (waitid(P_PIDFD, (id_t)p->pidfd, &si, WEXITED) < 0 && errno == EINTR)
        ;
    close(p->pidfd);
    free(p);
}
