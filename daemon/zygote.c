/* zygote.c — the daemon's side of the monitor zygote (monitor-proto.h,
 * "Zygote"; the zygote itself is daemon/monitor-zygote.c).
 *
 * The daemon spawns `sandboxd-monitor --zygote 3` once, with one end of a
 * SOCK_SEQPACKET pair as fd 3, and asks it for a monitor per sandbox: a
 * datagram and the monitor's end of its connection.  That is one sendmsg
 * on the loop instead of uv_spawn's fork of the daemon and the exec that
 * follows.  When there is no zygote to ask (not started yet, exited, its
 * socket full) sbxd_zygote_request() says so and the caller spawns the
 * monitor as a program: the zygote is a shortcut, never a dependency.
 *
 * An exited zygote is restarted at once, or after a delay that doubles
 * (up to ZYGOTE_MAX_DELAY_MS) while it keeps dying young. */
#include "sandboxd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ZYGOTE_YOUNG_MS     1000 /* dying sooner than this after its start */
#define ZYGOTE_MIN_DELAY_MS 100
#define ZYGOTE_MAX_DELAY_MS 10000

struct sbxd_zygote {
    struct sbxd *d;
    uv_process_t proc;
    uv_timer_t restart;
    int fd; /* our end of the control socket; -1 while there is no zygote */
    bool proc_open, stopping;
    uint64_t started_ms;
    uint64_t delay_ms; /* before the next restart after a young death */
    int handles;       /* open handles: freed once both closed after stop */
};

static void zygote_spawn(struct sbxd_zygote *z);

static void on_restart(uv_timer_t *t)
{
    zygote_spawn(t->data);
}

static void handle_closed(uv_handle_t *h)
{
    struct sbxd_zygote *z = h->data;

    if (h == (uv_handle_t *)&z->proc)
        z->proc_open = false;
    if (--z->handles == 0 && z->stopping) {
        free(z);
        return;
    }
    if (h == (uv_handle_t *)&z->proc && !z->stopping) {
        /* Restart: at once after a long life, later after a short one. */
        uint64_t lived = uv_now(z->d->loop) - z->started_ms, delay = 0;
        if (lived < ZYGOTE_YOUNG_MS) {
            delay = z->delay_ms;
            z->delay_ms =
                z->delay_ms * 2 > ZYGOTE_MAX_DELAY_MS ? ZYGOTE_MAX_DELAY_MS : z->delay_ms * 2;
        } else {
            z->delay_ms = ZYGOTE_MIN_DELAY_MS;
        }
        uv_timer_start(&z->restart, on_restart, delay, 0);
    }
}

static void zygote_exited(uv_process_t *p, int64_t status, int sig)
{
    struct sbxd_zygote *z = p->data;

    if (!z->stopping)
        sbxd_log(NULL, "monitor zygote (pid %d) exited (%s %d): starting another", p->pid,
                 sig ? "signal" : "status", sig ? sig : (int)status);
    if (z->fd >= 0) {
        close(z->fd);
        z->fd = -1;
    }
    uv_close((uv_handle_t *)p, handle_closed);
}

static void zygote_spawn(struct sbxd_zygote *z)
{
    struct sbxd *d = z->d;
    char pool[16], network[64];
    /* On the daemon's network, the pool's namespaces come with eth0. */
    char *args[] = {(char *)d->cfg.monitor_path,
                    "--zygote",
                    "3",
                    "--netpool",
                    pool,
                    d->cfg.network ? "--network" : NULL,
                    network,
                    "--run-dir",
                    (char *)d->cfg.run_dir,
                    NULL};
    uv_stdio_container_t stdio[4];
    uv_process_options_t opts = {0};
    int sv[2], r;

    snprintf(pool, sizeof(pool), "%u", d->cfg.netns_pool);
    snprintf(network, sizeof(network), "%s,%s", d->cfg.bridge, d->cfg.subnet);
    if (z->stopping || z->proc_open)
        return;
    /* Ours non-blocking (a full socket means "spawn instead"), the
     * zygote's blocking: it only ever waits for the next request. */
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        sbxd_log(NULL, "monitor zygote: socketpair: %s", strerror(errno));
        uv_timer_start(&z->restart, on_restart, ZYGOTE_MAX_DELAY_MS, 0);
        return;
    }
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_IGNORE;
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = 2;
    stdio[3].flags = UV_INHERIT_FD;
    stdio[3].data.fd = sv[1];
    opts.file = d->cfg.monitor_path;
    opts.args = args;
    opts.exit_cb = zygote_exited;
    opts.stdio = stdio;
    opts.stdio_count = 4;
    z->proc.data = z;
    r = uv_spawn(d->loop, &z->proc, &opts);
    close(sv[1]);
    z->handles++;
    z->proc_open = true;
    z->started_ms = uv_now(d->loop);
    if (r < 0) {
        sbxd_log(NULL, "monitor zygote: spawn %s: %s", d->cfg.monitor_path, uv_strerror(r));
        close(sv[0]);
        /* Its close callback schedules the next try. */
        uv_close((uv_handle_t *)&z->proc, handle_closed);
        return;
    }
    z->fd = sv[0];
    sbxd_log(NULL, "monitor zygote started (pid %d)", z->proc.pid);
}

int sbxd_zygote_start(struct sbxd *d)
{
    struct sbxd_zygote *z = calloc(1, sizeof(*z));

    if (!z)
        return -ENOMEM;
    z->d = d;
    z->fd = -1;
    z->delay_ms = ZYGOTE_MIN_DELAY_MS;
    uv_timer_init(d->loop, &z->restart);
    z->restart.data = z;
    z->handles = 1;
    d->zygote = z;
    zygote_spawn(z);
    return 0;
}

void sbxd_zygote_stop(struct sbxd *d)
{
    struct sbxd_zygote *z = d->zygote;

    if (!z)
        return;
    d->zygote = NULL;
    z->stopping = true;
    /* The zygote exits when its control socket closes; its monitors stay. */
    if (z->fd >= 0) {
        close(z->fd);
        z->fd = -1;
    }
    uv_timer_stop(&z->restart);
    uv_close((uv_handle_t *)&z->restart, handle_closed);
    if (z->proc_open && !uv_is_closing((uv_handle_t *)&z->proc))
        uv_close((uv_handle_t *)&z->proc, handle_closed);
}

int sbxd_zygote_request(struct sbxd *d, struct sbxd_sandbox *sb, const char *spec, const char *log,
                        int client_fd)
{
    struct sbxd_zygote *z = d->zygote;
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(sizeof(int))];
    } ctl = {0};
    struct iovec iov;
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl, .msg_controllen = sizeof(ctl)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    json_t *req;
    char *text;
    ssize_t n;

    if (!z || z->fd < 0)
        return -ENOTCONN;
    req = json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", sb->id, "spec", spec, "run_dir", d->cfg.run_dir,
                    "state_dir", d->cfg.state_dir, "log", log);
    text = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!text)
        return -ENOMEM;
    if (strlen(text) > SBXD_ZYGOTE_MAX_REQUEST) {
        free(text);
        return -E2BIG;
    }
    iov = (struct iovec){.iov_base = text, .iov_len = strlen(text)};
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &client_fd, sizeof(int));
    do
        n = sendmsg(z->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    free(text);
    if (n < 0) {
        int r = -errno;
        /* EPIPE: it died and its exit is not handled yet; EAGAIN: it is
         * behind.  Either way this monitor starts without it. */
        sbxd_log(sb->id, "monitor zygote: %s: starting the monitor directly", strerror(-r));
        return r;
    }
    return 0;
}
