/* monitor.c — sandboxd-monitor: the one process that owns a sandbox.
 *
 * The protocol, the files and their layout are in monitor-proto.h.  This file
 * is one epoll loop in one thread: the runtime clones namespaces from this
 * process (sbx_sandbox_create, sbx_sandbox_exec), which must never run
 * threads.  Everything that can block is non-blocking: the daemon's socket,
 * every output pipe and pty master, every stdin pipe.  Output goes to the
 * segment files as soon as it is read, with no buffering in user space, so a
 * reader of the files is never behind the sandbox by more than one read.
 *
 * Restart safety is the point: the daemon may come and go at any time; the
 * files are the truth and events sent to the daemon are only hints.
 */
#include "monitor.h"
#include "tls-dl.h"
#include "monitor-proto.h"
#include "sbx.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Everything a client can make the monitor hold is capped. */
#define MAX_RUNNING_PROCS 1024 /* exec'd processes not yet reaped */
#define MAX_PROCS         8192 /* all processes ever: "status" stays < 1 MiB */
#define PROC_HASH_SIZE    512
#define MAX_STDIN_QUEUE   (16 * 1024 * 1024) /* bytes queued for one process's stdin */
#define MAX_CLIENT_OUT    (16 * 1024 * 1024) /* replies and events the daemon has not read */
#define MAX_ID_LEN        64
#define READ_CHUNK        65536
#define PIPE_DEFAULT_SIZE 65536
#define BUSY_PIPE_SIZE    (1024 * 1024) /* a stream that fills its pipe gets this much */
/* One read of a stream: big reads hold the pipe's lock, which the writer
 * waits for, for a memcpy only (splice() into the segment measured slower:
 * it holds the lock across the file system's write). */
#define OUTPUT_CHUNK         (256 * 1024)
#define EXIT_GRACE_MS        1000  /* after an exec exits, how long to wait for its pipes' EOF */
#define FINISH_GRACE_MS      10000 /* after the sandbox finished, how long to wait for everything */
#define ANNOUNCE_MS          1     /* at most one output event per stream per this */
#define BACKGROUND_NICE      19    /* a pooled sandbox's start: nobody waits for it */
#define MAX_TUNNELS          16
#define TUNNEL_BUF           (64 * 1024) /* per direction of a tunnel connection */
#define DEFAULT_OUTPUT_LIMIT (64ULL * 1024 * 1024)

static void freep(void *p)
{
    free(*(void **)p);
}

static void closep(const int *fd)
{
    if (*fd >= 0)
        close(*fd);
}

static void json_unrefp(json_t **j)
{
    json_decref(*j);
}

#define _cleanup_free_  __attribute__((cleanup(freep)))
#define _cleanup_close_ __attribute__((cleanup(closep)))
#define _cleanup_json_  __attribute__((cleanup(json_unrefp)))

static int steal_fd(int *fd)
{
    int r = *fd;
    *fd = -1;
    return r;
}

/* ---- time and logging ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double now_real(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *log_id = "-";

/* stderr is the --log file (or /dev/null) once detached. */
void mlog(const char *fmt, ...)
{
    char when[32];
    time_t t = time(NULL);
    struct tm tm;
    va_list ap;

    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", gmtime_r(&t, &tm));
    fprintf(stderr, "%sZ sandboxd-monitor[%d] %s: ", when, (int)getpid(), log_id);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
}

/* ---- the state ---- */

/* What an epoll event's data.ptr points at: the first member of its owner. */
enum watch_kind {
    W_LISTEN,
    W_CLIENT,
    W_SANDBOX, /* the sandbox's exit fd or pidfd */
    W_OOM,
    W_SIGNAL,
    W_TIMER,
    W_STATUS, /* an exec's status_pidfd */
    W_OUTPUT,
    W_STDIN,
    W_PROBE,        /* a readiness probe's exec: its status_pidfd */
    W_TUNNEL,       /* a tunnel's listening socket on the host */
    W_TCONN_CLIENT, /* a tunnel connection: the host client's side */
    W_TCONN_SERVER, /* ... and the sandbox's */
};

struct watch {
    enum watch_kind kind;
    int fd; /* what is registered; -1: nothing */
};

struct proc;

/* One output stream of a process, written to procs/ID/NAME.OFFSET segments. */
struct stream {
    struct watch w; /* w.fd: the pipe's read end or the pty master, -1 once ended */
    struct proc *proc;
    const char *name; /* "stdout" or "stderr" */
    bool ended;       /* EOF read (or the monitor is leaving) */
    int seg_fd;       /* the current segment, -1 before the first byte or after a failure */
    uint64_t seg_start, oldest, size;
    uint64_t announced; /* the size last sent to the daemon */
    int64_t announced_at;
    bool write_failed;
    bool grown;    /* the pipe was made BUSY_PIPE_SIZE */
    bool recorded; /* its end is in procs.ndjson (its process's exit line, or one of its own) */
};

struct buffer {
    char *data;
    size_t off, len, cap;
};

struct proc {
    char id[MAX_ID_LEN + 1];
    bool is_entrypoint, pty;
    json_t *argv;          /* until procs.ndjson holds it */
    int dir_fd;            /* procs/ID, made at its first output byte; -1 before */
    struct sbx_process sp; /* exec'd processes */
    struct watch status_w; /* a dup of sp.status_pidfd, so the runtime's close cannot bite */
    bool running;          /* exec'd and not yet reaped */
    bool reaped;
    bool exited; /* its exit is in procs.ndjson */
    int returncode;
    int64_t kill_at;     /* exec timeout, 0: none */
    int64_t grace_until; /* reaped, waiting for its streams to end, 0: not */
    struct stream out[2];
    struct watch stdin_w; /* the stdin pipe's write end (a dup of the pty master) */
    bool stdin_watched;   /* registered for EPOLLOUT */
    bool stdin_eof;       /* close (or ^D) once the queue is empty */
    struct buffer stdin_q;
    struct proc *hash_next;             /* in m->proc_hash */
    struct proc *live_prev, *live_next; /* in m->live: it may still have timers or news */
};

struct client {
    struct watch w;
    bool dead;
    bool want_out;
    struct buffer in, out;
    struct client *next_dead;
};

struct spec {
    json_t *root;
    const char **layers, **env, **entrypoint;
    const char *workdir, *hostname, *cgroup_parent, *state_spare;
    uid_t uid;
    gid_t gid;
    bool no_userns;
    bool pooled; /* made ahead: idle, no timeouts, until a "claim" */
    /* The daemon's network, when the sandbox is on it (eth0 on its bridge). */
    bool on_network;
    struct sbx_network network;
    bool block_network;          /* loopback only */
    const char **cidr_allowlist; /* on the network: only these destinations */
    size_t n_cidr_allowlist;
    const char *resolv_conf;
    /* binds: volumes and allowed host paths */
    struct sbx_mount mounts[SBX_MAX_MOUNTS];
    size_t n_mounts;
    uint64_t disk_mib; /* the writable layer's cap, 0: none */
    /* readiness probe: a TCP port on the sandbox's loopback, or a command */
    int probe_tcp;
    const char **probe_exec;
    int64_t probe_interval_ms;
    /* tunnels: the sandbox's TCP ports, listened for on the host */
    int ports[MAX_TUNNELS];
    bool ports_tls[MAX_TUNNELS];
    size_t n_ports;
    const char *tunnel_bind;
    const char *tls_cert, *tls_key; /* the daemon's certificate, for tls ports */
    struct sbx_limits limits;
    uint64_t timeout_s, idle_timeout_s, output_limit;
};

enum mon_state { MON_RUNNING, MON_FINISHING, MON_DONE };

struct monitor {
    const char *id, *run_dir, *state_dir;
    char records[PATH_MAX], sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int records_fd, procs_fd;
    int procs_log_fd;  /* procs.ndjson, O_APPEND */
    int next_made;     /* pieces of procs/.next made (NEXT_PIECES: ready), -1: broken */
    int64_t last_busy; /* when the loop last had something to do (ms) */
    int netpool_fd;    /* the zygote's namespace pool, until the sandbox exists */
    int netpool_lo_fd; /* its loopback-only one (may be netpool_fd), for block_network */
    struct spec spec;
    uint64_t seg_max;

    int ep;
    struct watch listen_w, timer_w, signal_w, exit_w, pidfd_w, oom_w;
    struct client *client, *dead_clients;

    sbx_sandbox *sb;
    enum mon_state state;
    bool terminating;
    const char *pending_reason; /* why we terminated: terminated, timeout, idle_timeout */
    const char *finish_reason;
    int returncode;
    int64_t deadline, last_activity, finish_deadline;
    uint32_t allowed_addr; /* the sandbox's eth0, while its allowlist is in the firewall */

    /* The sandbox's network namespace and ours, for sockets made in its
     * (probes, tunnel connections). */
    int sb_netns_fd, own_netns_fd;

    /* Tunnels: a listener per port, and their connections. */
    struct tunnel {
        struct watch w;
        int port, host_port;
        bool tls;
    } tunnels[MAX_TUNNELS];
    size_t n_tunnels;
    gnutls_certificate_credentials_t tls_cred; /* loaded when a port is tls */
    struct tconn *tconns, *dead_tconns;
    unsigned n_tconns;

    /* The readiness probe, from the start until it passes or gives up. */
    struct {
        bool active;
        int64_t next_at, give_up_at;
        struct sbx_process sp; /* an exec probe running */
        bool running;
        struct watch w;
    } probe;

    struct proc **procs;
    size_t n_procs, cap_procs, n_running;
    /* Lookups by id, and the processes run_deadlines() must look at: a
     * sandbox that has run thousands of execs pays for those that are
     * still going, not for all of them, on every turn of the loop. */
    struct proc *proc_hash[PROC_HASH_SIZE];
    struct proc *live;   /* a circular list, or NULL */
    int64_t timer_armed; /* the deadline the timer is set to (0: none) */
    bool flush_due;      /* events queued for the daemon, sent before the loop waits */
};

/* ---- small helpers ---- */

static void probe_start(struct monitor *m);
static void tunnels_stop(struct monitor *m);
static json_t *tunnels_json(struct monitor *m);

static bool valid_id(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n == 0 || n > MAX_ID_LEN || !strcmp(s, ".") || !strcmp(s, ".."))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

static int buffer_append(struct buffer *b, const void *data, size_t n)
{
    if (b->off > 0 && b->off == b->len) {
        b->off = b->len = 0;
    }
    if (b->len + n > b->cap) {
        if (b->off > 0) {
            memmove(b->data, b->data + b->off, b->len - b->off);
            b->len -= b->off;
            b->off = 0;
        }
        if (b->len + n > b->cap) {
            size_t cap = b->cap ? b->cap : 4096;
            char *p;
            while (cap < b->len + n)
                cap *= 2;
            p = realloc(b->data, cap);
            if (!p)
                return -ENOMEM;
            b->data = p;
            b->cap = cap;
        }
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    return 0;
}

static size_t buffer_pending(const struct buffer *b)
{
    return b->len - b->off;
}

static void buffer_free(struct buffer *b)
{
    free(b->data);
    *b = (struct buffer){0};
}

static ssize_t write_all(int fd, const void *data, size_t n)
{
    size_t done = 0;

    while (done < n) {
        ssize_t w = write(fd, (const char *)data + done, n - done);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        done += (size_t)w;
    }
    return (ssize_t)done;
}

/* Replaces dir/name atomically: a temporary file in the same directory, then
 * rename, so that a reader (the daemon, now or after its restart) sees the
 * old record or the new one, never half of one.  Not fsync'd: these records
 * describe processes that do not survive a host crash, and an fsync costs
 * milliseconds on every exit.  (sync_dir is kept for the callers' intent and
 * ignored.) */
static int write_json_at(int dir_fd, const char *name, json_t *j, bool sync_dir)
{
    _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);
    char tmp[NAME_MAX + 1];
    _cleanup_close_ int fd = -1;
    ssize_t w;

    if (!text)
        return -ENOMEM;
    snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
    fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    if ((w = write_all(fd, text, strlen(text))) < 0 || (w = write_all(fd, "\n", 1)) < 0) {
        unlinkat(dir_fd, tmp, 0);
        return (int)w;
    }
    (void)sync_dir;
    if (renameat(dir_fd, tmp, dir_fd, name) < 0) {
        int r = -errno;
        unlinkat(dir_fd, tmp, 0);
        return r;
    }
    return 0;
}

/* One O_APPEND write per line: whole lines even beside the daemon's own. */
static void append_event(struct monitor *m, json_t *ev)
{
    _cleanup_free_ char *text = json_dumps(ev, JSON_COMPACT);
    _cleanup_close_ int fd = -1;
    _cleanup_free_ char *line = NULL;

    if (!text || asprintf(&line, "%s\n", text) < 0) {
        line = NULL;
        return;
    }
    fd = openat(m->records_fd, "events.ndjson", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || write_all(fd, line, strlen(line)) < 0)
        mlog("append to events.ndjson: %s", strerror(errno));
}

static void append_simple_event(struct monitor *m, const char *event)
{
    _cleanup_json_ json_t *ev = json_pack("{s:s,s:f}", "event", event, "at", now_real());
    if (ev)
        append_event(m, ev);
}

/* An API.md error code for an errno from the runtime. */
static const char *errno_code(int e)
{
    switch (e) {
    case EINVAL:
    case ENOENT:
    case ENOTDIR:
    case EACCES:
    case ENOEXEC:
    case E2BIG:
    case ENAMETOOLONG:
        return "invalid_argument";
    case ESRCH:
        return "failed_precondition";
    case ENOMEM:
    case EAGAIN:
    case ENOSPC:
    case EMFILE:
    case ENFILE:
    case EUSERS:
    case EDQUOT:
        return "resource_exhausted";
    default:
        return "internal";
    }
}

/* ---- epoll ---- */

static int watch_add(struct monitor *m, struct watch *w, int fd, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = w};

    if (epoll_ctl(m->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -errno;
    w->fd = fd;
    return 0;
}

static void watch_mod(struct monitor *m, struct watch *w, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = w};

    if (w->fd >= 0 && epoll_ctl(m->ep, EPOLL_CTL_MOD, w->fd, &ev) < 0)
        mlog("epoll_ctl mod fd %d: %s", w->fd, strerror(errno));
}

/* Unregisters and closes.  Always both: another process may hold a copy of
 * the fd (a forked exec helper does, briefly), and epoll forgets a
 * registration only when the last copy closes. */
static void watch_close(struct monitor *m, struct watch *w)
{
    if (w->fd < 0)
        return;
    epoll_ctl(m->ep, EPOLL_CTL_DEL, w->fd, NULL);
    close(w->fd);
    w->fd = -1;
}

/* ---- the client (the daemon) ---- */

static void client_drop(struct monitor *m, const char *why)
{
    struct client *c = m->client;

    if (!c)
        return;
    mlog("client dropped: %s", why);
    watch_close(m, &c->w);
    c->dead = true;
    c->next_dead = m->dead_clients;
    m->dead_clients = c;
    m->client = NULL;
}

static void client_free_dead(struct monitor *m)
{
    while (m->dead_clients) {
        struct client *c = m->dead_clients;
        m->dead_clients = c->next_dead;
        buffer_free(&c->in);
        buffer_free(&c->out);
        free(c);
    }
}

static void client_flush(struct monitor *m)
{
    struct client *c = m->client;

    while (c && buffer_pending(&c->out) > 0) {
        ssize_t w = send(c->w.fd, c->out.data + c->out.off, buffer_pending(&c->out),
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!c->want_out) {
                    c->want_out = true;
                    watch_mod(m, &c->w, EPOLLIN | EPOLLOUT);
                }
                return;
            }
            client_drop(m, strerror(errno));
            return;
        }
        c->out.off += (size_t)w;
    }
    if (c && c->want_out) {
        c->want_out = false;
        watch_mod(m, &c->w, EPOLLIN);
    }
}

/* Queues one message for the daemon; takes the reference.  Without a
 * client the message is dropped: the files hold everything it says. */
static void client_send(struct monitor *m, json_t *msg)
{
    struct client *c = m->client;
    _cleanup_free_ char *text = NULL;
    bool is_reply;

    if (!msg)
        return;
    is_reply = json_object_get(msg, "seq") != NULL;
    if (c)
        text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (!c || !text)
        return;
    if (buffer_pending(&c->out) + strlen(text) + 1 > MAX_CLIENT_OUT) {
        client_drop(m, "it reads too slowly");
        return;
    }
    if (buffer_append(&c->out, text, strlen(text)) < 0 || buffer_append(&c->out, "\n", 1) < 0) {
        client_drop(m, "out of memory");
        return;
    }
    /* A reply goes at once; events wait for the end of the loop's turn, so
     * that a process's end (its streams' EOFs, then its exit) reaches the
     * daemon in one send, which wakes it once. */
    if (is_reply)
        client_flush(m);
    else
        m->flush_due = true;
}

/* ---- output streams ---- */

static int proc_dir_open(struct monitor *m, struct proc *p);

/* Opens the segment starting at seg_start; errno says why not. */
static int segment_open(struct monitor *m, struct proc *p, struct stream *s)
{
    char name[64];

    if (proc_dir_open(m, p) < 0)
        return -errno;
    snprintf(name, sizeof(name), "%s.%llu", s->name, (unsigned long long)s->seg_start);
    /* Written with pwrite() at the stream's own count of its bytes. */
    s->seg_fd = openat(p->dir_fd, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (s->seg_fd < 0)
        return -errno;
    /* A stream that keeps its pipe full fills the segment: its blocks at
     * once (the size stays what was written) rather than reserved page by
     * page on the way. */
    if (s->grown)
        (void)fallocate(s->seg_fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)m->seg_max);
    return 0;
}

static void announce(struct monitor *m, struct stream *s, int64_t now)
{
    s->announced = s->size;
    s->announced_at = now;
    client_send(m, json_pack("{s:s,s:s,s:s,s:I}", "ev", "output", "id", s->proc->id, "stream",
                             s->name, "size", (json_int_t)s->size));
}

/* Counts n bytes just written to the current segment, and deletes the
 * oldest segments while more than output_limit bytes are kept.  Every
 * segment but the current one holds exactly seg_max bytes, so the oldest
 * segment's successor starts seg_max bytes later. */
static void stream_advance(struct monitor *m, struct stream *s, size_t n)
{
    struct proc *p = s->proc;

    s->size += n;
    while (s->size - s->oldest > m->spec.output_limit && s->oldest < s->seg_start) {
        char name[64];
        snprintf(name, sizeof(name), "%s.%llu", s->name, (unsigned long long)s->oldest);
        if (unlinkat(p->dir_fd, name, 0) < 0 && errno != ENOENT)
            mlog("process %s: remove %s: %s", p->id, name, strerror(errno));
        s->oldest += m->seg_max;
    }
}

/* The current segment's room, rotating to a new segment when it is full.
 * A segment is made when its first byte comes: a stream that stays empty
 * costs no file (a file create is some 40 us on the critical path of every
 * exec).  Returns 0, or -1 with errno when no segment could be opened. */
static int segment_room(struct monitor *m, struct stream *s, size_t *ret_room)
{
    if (s->seg_fd >= 0 && s->size - s->seg_start >= m->seg_max) {
        close(s->seg_fd);
        s->seg_fd = -1;
    }
    if (s->seg_fd < 0) {
        s->seg_start = s->size;
        if (segment_open(m, s->proc, s) < 0)
            return -1;
    }
    *ret_room = m->seg_max - (size_t)(s->size - s->seg_start);
    return 0;
}

/* Appends to the stream's segments. */
static void stream_write(struct monitor *m, struct stream *s, const char *data, size_t n)
{
    while (n > 0) {
        size_t chunk;
        ssize_t w;

        if (segment_room(m, s, &chunk) < 0)
            goto lost;
        if (chunk > n)
            chunk = n;
        do
            w = pwrite(s->seg_fd, data, chunk, (off_t)(s->size - s->seg_start));
        while (w < 0 && errno == EINTR);
        if (w <= 0)
            goto lost;
        stream_advance(m, s, (size_t)w);
        data += w;
        n -= (size_t)w;
    }
    return;
lost:
    /* The bytes are not counted: the stream's offsets stay those of the
     * files.  Said once per stream. */
    if (!s->write_failed)
        mlog("process %s: %s: output lost: %s", s->proc->id, s->name, strerror(errno));
    s->write_failed = true;
}

static void proc_maybe_done(struct monitor *m, struct proc *p);

static int procs_log(struct monitor *m, json_t *line);

/* A stream that ends after its process's exit line was written gets a line
 * of its own; before, the exit line records it ("eof"). */
static void stream_mark(struct monitor *m, struct stream *s)
{
    int r;

    if (s->recorded)
        return;
    s->recorded = true;
    r = procs_log(m, json_pack("{s:s,s:[s]}", "process_id", s->proc->id, "eof", s->name));
    if (r < 0)
        mlog("process %s: record the end of %s: %s", s->proc->id, s->name, strerror(-r));
}

/* The stream has ended (EOF, or the monitor is leaving). */
static void stream_end(struct monitor *m, struct stream *s)
{
    if (s->ended)
        return;
    watch_close(m, &s->w);
    if (s->seg_fd >= 0) {
        close(s->seg_fd);
        s->seg_fd = -1;
    }
    s->ended = true;
    if (s->proc->exited)
        stream_mark(m, s);
    if (s->size != s->announced)
        announce(m, s, now_ms());
    client_send(m, json_pack("{s:s,s:s,s:s}", "ev", "eof", "id", s->proc->id, "stream", s->name));
}

/* Reads once (or, draining, until the pipe is empty); returns true at EOF. */
static bool stream_read(struct monitor *m, struct stream *s, bool drain)
{
    static char buf[OUTPUT_CHUNK];
    int rounds = drain ? 64 : 1;

    while (s->w.fd >= 0 && rounds-- > 0) {
        ssize_t n = read(s->w.fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            rounds++;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return false;
        if (n <= 0) {
            /* 0 is EOF; a pty master says EIO once no slave is open. */
            if (n < 0 && errno != EIO)
                mlog("process %s: read %s: %s", s->proc->id, s->name, strerror(errno));
            stream_end(m, s);
            return true;
        }
        stream_write(m, s, buf, (size_t)n);
        /* A pipe that was full: its writer outpaces us.  A bigger pipe lets
         * it run on while we write to the file, and each of our reads take
         * more (fewer wake-ups for both).  Its pages are the writer's. */
        if (n >= PIPE_DEFAULT_SIZE && !s->grown && !s->proc->pty) {
            s->grown = true;
            (void)fcntl(s->w.fd, F_SETPIPE_SZ, BUSY_PIPE_SIZE);
        }
        if (m->client) {
            int64_t now = now_ms();
            if (now - s->announced_at >= ANNOUNCE_MS)
                announce(m, s, now);
        }
    }
    return s->ended;
}

/* Takes fd (the read end, or -1 for a stream that is empty and ended). */
static int stream_init(struct monitor *m, struct proc *p, int which, int fd)
{
    struct stream *s = &p->out[which];
    int r;

    s->proc = p;
    s->name = which ? "stderr" : "stdout";
    s->w = (struct watch){.kind = W_OUTPUT, .fd = -1};
    s->seg_fd = -1;
    if (fd < 0) {
        /* /dev/null, or merged into stdout. */
        stream_end(m, s);
        return 0;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    r = watch_add(m, &s->w, fd, EPOLLIN);
    if (r < 0)
        close(fd);
    return r;
}

/* Watches a copy of a runtime-owned fd, so that the runtime closing its own
 * never leaves a registration behind. */
static int watch_dup(struct monitor *m, struct watch *w, int fd, uint32_t events)
{
    int d = fcntl(fd, F_DUPFD_CLOEXEC, 3), r;

    if (d < 0)
        return -errno;
    r = watch_add(m, w, d, events);
    if (r < 0)
        close(d);
    return r;
}

/* ---- stdin ---- */

static void stdin_close(struct monitor *m, struct proc *p)
{
    watch_close(m, &p->stdin_w);
    p->stdin_watched = false;
    buffer_free(&p->stdin_q);
}

static void stdin_flush(struct monitor *m, struct proc *p)
{
    while (p->stdin_w.fd >= 0 && buffer_pending(&p->stdin_q) > 0) {
        ssize_t w =
            write(p->stdin_w.fd, p->stdin_q.data + p->stdin_q.off, buffer_pending(&p->stdin_q));
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!p->stdin_watched) {
                    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = &p->stdin_w};
                    if (epoll_ctl(m->ep, EPOLL_CTL_ADD, p->stdin_w.fd, &ev) == 0)
                        p->stdin_watched = true;
                }
                return;
            }
            /* EPIPE: the reader is gone, and so is what it did not read. */
            mlog("process %s: write stdin: %s", p->id, strerror(errno));
            stdin_close(m, p);
            return;
        }
        p->stdin_q.off += (size_t)w;
    }
    if (p->stdin_w.fd < 0)
        return;
    if (p->stdin_watched) {
        epoll_ctl(m->ep, EPOLL_CTL_DEL, p->stdin_w.fd, NULL);
        p->stdin_watched = false;
    }
    buffer_free(&p->stdin_q);
    if (p->stdin_eof) {
        /* A terminal has no write side to close: ^D ends its input. */
        if (p->pty && write(p->stdin_w.fd, "\x04", 1) < 0)
            mlog("process %s: write ^D: %s", p->id, strerror(errno));
        stdin_close(m, p);
    }
}

/* ---- processes ---- */

static unsigned proc_hash(const char *id)
{
    unsigned h = 2166136261u; /* FNV-1a */

    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 16777619u;
    return h % PROC_HASH_SIZE;
}

static struct proc *proc_find(struct monitor *m, const char *id)
{
    for (struct proc *p = m->proc_hash[proc_hash(id)]; p; p = p->hash_next)
        if (!strcmp(p->id, id))
            return p;
    return NULL;
}

static void live_add(struct monitor *m, struct proc *p)
{
    if (!m->live) {
        p->live_prev = p->live_next = p;
        m->live = p;
        return;
    }
    p->live_next = m->live;
    p->live_prev = m->live->live_prev;
    p->live_prev->live_next = p;
    m->live->live_prev = p;
}

static void live_remove(struct monitor *m, struct proc *p)
{
    if (!p->live_next)
        return;
    if (p->live_next == p) {
        m->live = NULL;
    } else {
        p->live_prev->live_next = p->live_next;
        p->live_next->live_prev = p->live_prev;
        if (m->live == p)
            m->live = p->live_next;
    }
    p->live_prev = p->live_next = NULL;
}

/* Nothing left for run_deadlines(): exited, recorded, streams ended and
 * announced. */
static bool proc_settled(const struct proc *p)
{
    return p->exited && !p->running && !p->grace_until && !p->kill_at && p->out[0].ended &&
           p->out[1].ended && p->out[0].size == p->out[0].announced &&
           p->out[1].size == p->out[1].announced;
}

static struct proc *proc_new(struct monitor *m, const char *id, json_t *argv, bool pty)
{
    struct proc *p;

    if (m->n_procs == m->cap_procs) {
        size_t cap = m->cap_procs ? m->cap_procs * 2 : 16;
        struct proc **a = realloc(m->procs, cap * sizeof(*a));
        if (!a)
            return NULL;
        m->procs = a;
        m->cap_procs = cap;
    }
    p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    snprintf(p->id, sizeof(p->id), "%s", id);
    p->argv = json_incref(argv);
    p->pty = pty;
    p->dir_fd = -1;
    p->sp = (struct sbx_process){.pidfd = -1, .pty_master = -1, .status_pidfd = -1};
    p->status_w = (struct watch){.kind = W_STATUS, .fd = -1};
    p->stdin_w = (struct watch){.kind = W_STDIN, .fd = -1};
    for (int i = 0; i < 2; i++)
        p->out[i] = (struct stream){.w = {.kind = W_OUTPUT, .fd = -1}, .seg_fd = -1, .proc = p};
    m->procs[m->n_procs++] = p;
    p->hash_next = m->proc_hash[proc_hash(p->id)];
    m->proc_hash[proc_hash(p->id)] = p;
    live_add(m, p);
    return p;
}

/* Forgets the last proc_new()'s process (an exec that failed). */
static void proc_discard_last(struct monitor *m)
{
    struct proc *p = m->procs[--m->n_procs];

    /* The newest: first in its bucket. */
    m->proc_hash[proc_hash(p->id)] = p->hash_next;
    live_remove(m, p);
    for (int i = 0; i < 2; i++) {
        watch_close(m, &p->out[i].w);
        if (p->out[i].seg_fd >= 0)
            close(p->out[i].seg_fd);
    }
    stdin_close(m, p);
    watch_close(m, &p->status_w);
    if (p->dir_fd >= 0)
        close(p->dir_fd);
    json_decref(p->argv);
    free(p);
}

/* ---- a process's records ----
 *
 * Making a file allocates an inode, and that is the slowest step of an
 * exec's records: ~40 us on a quiet ext4, and 0.3-0.5 ms on one that has
 * seen many files come and go (ext4 skips recently deleted inodes, reading
 * the inode table for each it looks at: measured as half of a monitor's CPU
 * time under back-to-back execs).  So a process's start and exit are lines
 * appended to the sandbox's procs.ndjson (one write each, no inode), and
 * its directory procs/ID is needed only for output: it is made at the
 * first output byte, from procs/.next when that is ready.  procs/.next
 * holds the directory with the first segments of both streams; it is made
 * one piece at a time once the loop has had nothing to do for
 * NEXT_QUIET_MS: on a disk whose journal is the bottleneck any file
 * operation takes ~1 ms, and made between a busy client's requests each
 * would delay the next. */
static const char *const next_files[] = {SBXD_NEXT_FILES};
#define NEXT_PIECES   (1 + (int)(sizeof(next_files) / sizeof(next_files[0])))
#define NEXT_QUIET_MS 20 /* how long the loop must have had nothing to do */

/* One line of procs.ndjson, in one O_APPEND write: a reader sees whole
 * lines (the last one may be cut short by a host crash: readers skip a
 * line that does not parse).  Takes the reference to line. */
static int procs_log(struct monitor *m, json_t *line)
{
    _cleanup_free_ char *text = line ? json_dumps(line, JSON_COMPACT) : NULL;
    size_t n;
    ssize_t w;

    json_decref(line);
    if (!text)
        return -ENOMEM;
    n = strlen(text);
    text[n] = '\n'; /* json_dumps() leaves room: the terminator becomes the newline */
    do
        w = write(m->procs_log_fd, text, n + 1);
    while (w < 0 && errno == EINTR);
    if (w < 0)
        return -errno;
    return w == (ssize_t)(n + 1) ? 0 : -EIO;
}

static bool next_wanted(const struct monitor *m)
{
    return m->next_made >= 0 && m->next_made < NEXT_PIECES && m->state == MON_RUNNING &&
           !m->terminating && m->procs_fd >= 0;
}

/* The daemon's record directories come with procs/.next made (spare.c). */
static void next_adopt(struct monitor *m)
{
    char path[64];

    for (size_t i = 0; i < sizeof(next_files) / sizeof(next_files[0]); i++) {
        snprintf(path, sizeof(path), ".next/%s", next_files[i]);
        if (faccessat(m->procs_fd, path, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
            return;
    }
    m->next_made = NEXT_PIECES;
}

/* Makes one more piece of procs/.next. */
static void next_step(struct monitor *m)
{
    int fd;

    if (m->next_made == 0) {
        if (mkdirat(m->procs_fd, ".next", 0700) < 0 && errno != EEXIST)
            goto broken;
        m->next_made++;
        return;
    }
    {
        char path[64];
        snprintf(path, sizeof(path), ".next/%s", next_files[m->next_made - 1]);
        fd = openat(m->procs_fd, path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    }
    if (fd < 0)
        goto broken;
    close(fd);
    m->next_made++;
    return;
broken:
    mlog("make procs/.next: %s (processes make their own directories)", strerror(errno));
    m->next_made = -1;
}

/* procs/ID, for the process's output; errno says why not. */
static int proc_dir_open(struct monitor *m, struct proc *p)
{
    if (p->dir_fd >= 0)
        return 0;
    if (m->next_made == NEXT_PIECES && renameat(m->procs_fd, ".next", m->procs_fd, p->id) == 0)
        m->next_made = 0; /* the loop makes the next one when it is idle */
    else if (mkdirat(m->procs_fd, p->id, 0700) < 0 && errno != EEXIST)
        return -1;
    p->dir_fd = openat(m->procs_fd, p->id, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    return p->dir_fd < 0 ? -1 : 0;
}

/* The process's start line, once it runs and its streams are watched. */
static int proc_record_start(struct monitor *m, struct proc *p)
{
    int r = procs_log(m, json_pack("{s:s,s:O,s:f,s:b}", "process_id", p->id, "argv", p->argv,
                                   "started_at", now_real(), "pty", p->pty));

    /* Up to a message's size each: on disk now, not in memory. */
    json_decref(p->argv);
    p->argv = NULL;
    return r;
}

/* The exit line, then the event: once it is there, all the output is on disk. */
static void proc_write_exit(struct monitor *m, struct proc *p, int returncode)
{
    json_t *ex;
    int r;

    if (p->exited)
        return;
    p->exited = true;
    p->returncode = returncode;
    p->grace_until = 0;
    /* The streams that have ended are recorded here, not in lines of their own. */
    ex = json_pack("{s:s,s:i,s:f,s:[]}", "process_id", p->id, "returncode", returncode,
                   "finished_at", now_real(), "eof");
    for (int i = 0; ex && i < 2; i++)
        if (p->out[i].ended && !p->out[i].recorded)
            json_array_append_new(json_object_get(ex, "eof"), json_string(p->out[i].name));
    if ((r = procs_log(m, ex)) < 0)
        mlog("process %s: record its exit: %s", p->id, strerror(-r));
    for (int i = 0; i < 2; i++)
        if (p->out[i].ended && !p->out[i].recorded) {
            if (r >= 0)
                p->out[i].recorded = true;
            else
                stream_mark(m, &p->out[i]); /* one more try, a line of its own */
        }
    client_send(m, json_pack("{s:s,s:s,s:i}", "ev", "exit", "id", p->id, "returncode", returncode));
}

static bool proc_streams_ended(const struct proc *p)
{
    return p->out[0].ended && p->out[1].ended;
}

/* An exec'd process is done once it has been reaped and its streams have
 * ended, or the grace period after its exit has passed (a background child
 * may hold its pipes: what it writes later still lands in the files). */
static void proc_maybe_done(struct monitor *m, struct proc *p)
{
    if (p->is_entrypoint || !p->reaped || p->exited)
        return;
    if (proc_streams_ended(p) || (p->grace_until && now_ms() >= p->grace_until))
        proc_write_exit(m, p, p->returncode);
}

static void proc_reap(struct monitor *m, struct proc *p)
{
    sbx_error err = {0};
    int rc = 0, r;

    r = sbx_process_wait(&p->sp, 0, &rc, &err);
    if (r == 0)
        return;
    watch_close(m, &p->status_w);
    if (r < 0) {
        mlog("process %s: %s", p->id, err.message);
        rc = 137;
    }
    p->reaped = true;
    p->running = false;
    p->returncode = rc;
    p->kill_at = 0;
    if (m->n_running > 0 && --m->n_running == 0)
        m->last_activity = now_ms();
    /* Nobody will read its stdin any more. */
    stdin_close(m, p);
    /* Everything the process wrote is in its pipes now: take it. */
    for (int i = 0; i < 2; i++)
        stream_read(m, &p->out[i], true);
    if (!proc_streams_ended(p))
        p->grace_until = now_ms() + EXIT_GRACE_MS;
    proc_maybe_done(m, p);
}

/* ---- the sandbox's end ---- */

static void terminate_with(struct monitor *m, const char *reason)
{
    sbx_error err = {0};

    if (m->state != MON_RUNNING || m->terminating)
        return;
    m->terminating = true;
    m->pending_reason = reason;
    mlog("terminating the sandbox: %s", reason);
    if (sbx_sandbox_terminate(m->sb, &err) < 0)
        mlog("terminate: %s", err.message);
}

static void sandbox_finished(struct monitor *m, const struct sbx_exit *ex)
{
    m->state = MON_FINISHING;
    m->finish_deadline = now_ms() + FINISH_GRACE_MS;
    m->returncode = ex->returncode;
    switch (ex->reason) {
    case SBX_FINISH_OOM:
        m->finish_reason = "oom";
        break;
    case SBX_FINISH_TERMINATED:
        m->finish_reason = m->pending_reason ? m->pending_reason : "terminated";
        break;
    default:
        m->finish_reason = "exited";
    }
    /* A sandbox that could not be put to use has no returncode (API.md:
     * null with finish_reason "error"), as one that could not be made. */
    if (!strcmp(m->finish_reason, "error"))
        m->returncode = -1;
    mlog("the sandbox finished: %s, returncode %d", m->finish_reason, m->returncode);
    watch_close(m, &m->exit_w);
    watch_close(m, &m->pidfd_w);
    watch_close(m, &m->oom_w);
    tunnels_stop(m);
    for (size_t i = 0; i < m->n_procs; i++)
        stdin_close(m, m->procs[i]);
}

/* Called for anything on the sandbox's exit fd, pidfd or OOM fd. */
static void sandbox_check(struct monitor *m)
{
    struct sbx_exit ex;
    sbx_error err = {0};
    int r;

    if (m->state != MON_RUNNING)
        return;
    r = sbx_sandbox_poll(m->sb, &ex, &err);
    if (r < 0) {
        mlog("poll: %s", err.message);
        return;
    }
    if (r == 1) {
        sandbox_finished(m, &ex);
        return;
    }
    /* Init's socket ended without EXIT: the runtime closed it and now
     * watches init's pidfd, which we watch anyway. */
    if (m->exit_w.fd >= 0 && sbx_sandbox_exit_fd(m->sb) == sbx_sandbox_pidfd(m->sb))
        watch_close(m, &m->exit_w);
}

static bool finish_ready(struct monitor *m)
{
    if (now_ms() >= m->finish_deadline)
        return true;
    for (size_t i = 0; i < m->n_procs; i++) {
        struct proc *p = m->procs[i];
        if (!proc_streams_ended(p) || (!p->is_entrypoint && !p->reaped))
            return false;
    }
    return true;
}

/* Takes the sandbox's allowlist out of the firewall (before its address
 * is released with the sandbox). */
static void allowlist_clear(struct monitor *m)
{
    sbx_error err = {0};

    if (!m->allowed_addr)
        return;
    if (sbx_network_allow_clear(&m->spec.network, m->allowed_addr, &err) < 0)
        mlog("clear the allowlist: %s", err.message);
    m->allowed_addr = 0;
}

/* Everything is on disk or given up on: the records, then the sandbox goes. */
static void finish_complete(struct monitor *m)
{
    _cleanup_json_ json_t *ex = NULL, *ev = NULL;
    sbx_error err = {0};
    double at;
    int r;

    for (size_t i = 0; i < m->n_procs; i++) {
        struct proc *p = m->procs[i];
        for (int s = 0; s < 2; s++) {
            if (!p->out[s].ended)
                stream_read(m, &p->out[s], true);
            stream_end(m, &p->out[s]);
        }
        if (p->is_entrypoint) {
            proc_write_exit(m, p, m->returncode);
        } else {
            if (!p->reaped && p->status_w.fd >= 0)
                proc_reap(m, p);
            if (!p->reaped) {
                mlog("process %s: not reaped in time, recorded as killed", p->id);
                p->reaped = true;
                p->returncode = 137;
                watch_close(m, &p->status_w);
            }
            proc_write_exit(m, p, p->returncode);
        }
    }
    at = now_real();
    ex = json_pack("{s:o,s:s,s:f}", "returncode",
                   m->returncode >= 0 ? json_integer(m->returncode) : json_null(), "finish_reason",
                   m->finish_reason, "finished_at", at);
    if (!ex || (r = write_json_at(m->records_fd, "exit.json", ex, true)) < 0)
        mlog("write exit.json: %s", ex ? strerror(-r) : "out of memory");
    ev = json_pack("{s:s,s:f,s:o,s:s}", "event", "finished", "at", at, "returncode",
                   m->returncode >= 0 ? json_integer(m->returncode) : json_null(), "finish_reason",
                   m->finish_reason);
    if (ev)
        append_event(m, ev);
    /* The daemon learns of the end first: the records are complete, and
     * tearing the sandbox down (reaping, cgroups, directories) takes
     * milliseconds nobody needs to wait for. */
    client_send(m, json_pack("{s:s,s:o,s:s}", "ev", "finished", "returncode",
                             m->returncode >= 0 ? json_integer(m->returncode) : json_null(),
                             "finish_reason", m->finish_reason));
    allowlist_clear(m);
    client_flush(m);
    /* Nobody waits for the rest (reaping, cgroups, directories), but it
     * runs at the normal priority all the same: at a low one, a host kept
     * busy by creates let dying sandboxes pile up (their cgroups, network
     * namespaces, uid ranges), and a rate measured over seconds counted
     * teardowns not yet done. */
    if (sbx_sandbox_destroy(m->sb, &err) < 0)
        mlog("destroy: %s", err.message);
    m->sb = NULL;
    m->state = MON_DONE;
}

/* ---- requests ---- */

struct op_error {
    const char *code;
    char message[512];
};

__attribute__((format(printf, 3, 4))) static int fail(struct op_error *e, const char *code,
                                                      const char *fmt, ...)
{
    va_list ap;

    e->code = code;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    return -1;
}

/* A NULL-terminated view of a JSON array of strings (pointing into it), or
 * NULL with *ok false when it is something else. */
static const char **strv_of(json_t *a, bool need_nonempty, bool need_eq, bool *ok)
{
    const char **v;
    json_t *e;
    size_t i;

    *ok = false;
    if (!json_is_array(a) || (need_nonempty && json_array_size(a) == 0))
        return NULL;
    v = calloc(json_array_size(a) + 1, sizeof(*v));
    if (!v)
        return NULL;
    json_array_foreach(a, i, e)
    {
        if (!json_is_string(e) || (need_eq && !strchr(json_string_value(e), '='))) {
            free(v);
            return NULL;
        }
        v[i] = json_string_value(e);
    }
    *ok = true;
    return v;
}

/* An optional non-negative integer field: absent or null keeps *ret. */
static bool get_uint(json_t *o, const char *key, uint64_t max, uint64_t *ret)
{
    json_t *v = json_object_get(o, key);

    if (!v || json_is_null(v))
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
        return false;
    *ret = (uint64_t)json_integer_value(v);
    return true;
}

static struct proc *proc_of_request(struct monitor *m, json_t *req, struct op_error *e)
{
    const char *id = json_string_value(json_object_get(req, "id"));
    struct proc *p;

    if (!id) {
        fail(e, "invalid_argument", "\"id\" must be a string");
        return NULL;
    }
    p = proc_find(m, id);
    if (!p)
        fail(e, "not_found", "no process `%.64s`", id);
    return p;
}

/* The entrypoint's streams, from the parent's ends of its stdio pipes
 * (taken): its output is recorded like an exec'd process's; it has no
 * status of its own, its end being the sandbox's. */
static int entrypoint_adopt(struct monitor *m, struct proc *ep, int pipes[3][2])
{
    int r = stream_init(m, ep, 0, steal_fd(&pipes[1][0]));

    if (r >= 0)
        r = stream_init(m, ep, 1, steal_fd(&pipes[2][0]));
    if (r < 0)
        return r;
    ep->is_entrypoint = true;
    ep->stdin_w.fd = steal_fd(&pipes[0][1]);
    fcntl(ep->stdin_w.fd, F_SETFL, fcntl(ep->stdin_w.fd, F_GETFL) | O_NONBLOCK);
    return 0;
}

static int op_exec(struct monitor *m, json_t *req, json_t *reply, struct op_error *e)
{
    const char *id = json_string_value(json_object_get(req, "id"));
    json_t *argv_j = json_object_get(req, "argv"), *env_j = json_object_get(req, "env");
    json_t *pty_j = json_object_get(req, "pty"), *v;
    const char *out_mode = "pipe", *err_mode = "pipe", *workdir = m->spec.workdir;
    _cleanup_free_ const char **argv = NULL, **env = NULL;
    uint64_t uid = m->spec.uid, gid = m->spec.gid, timeout_s = 0, rows = 24, cols = 80;
    int in_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
    struct sbx_exec_config cfg = {0};
    sbx_error err = {0};
    struct proc *p;
    bool ok;
    int r, pending = -1;

    if (m->state != MON_RUNNING || m->terminating)
        return fail(e, "failed_precondition", "the sandbox has finished");
    if (m->spec.pooled)
        return fail(e, "failed_precondition", "the sandbox is pooled: claim it first");
    if (!valid_id(id) || !strcmp(id, SBXD_ENTRYPOINT_ID))
        return fail(e, "invalid_argument", "\"id\" must match [A-Za-z0-9._-]{1,64}");
    if (proc_find(m, id))
        return fail(e, "invalid_argument", "process `%s` exists already", id);
    if (m->n_running >= MAX_RUNNING_PROCS || m->n_procs >= MAX_PROCS)
        return fail(e, "resource_exhausted", "too many processes (%zu running, %zu in all)",
                    m->n_running, m->n_procs);
    argv = strv_of(argv_j, true, false, &ok);
    if (!ok)
        return fail(e, "invalid_argument", "\"argv\" must be a non-empty array of strings");
    if (env_j && !json_is_null(env_j)) {
        env = strv_of(env_j, false, true, &ok);
        if (!ok)
            return fail(e, "invalid_argument", "\"env\" must be an array of \"K=V\" strings");
    }
    if ((v = json_object_get(req, "workdir")) && !json_is_null(v)) {
        workdir = json_string_value(v);
        if (!workdir || workdir[0] != '/')
            return fail(e, "invalid_argument", "\"workdir\" must be an absolute path");
    }
    if (!get_uint(req, "uid", UINT32_MAX - 1, &uid) || !get_uint(req, "gid", UINT32_MAX - 1, &gid))
        return fail(e, "invalid_argument", "\"uid\" and \"gid\" must be ids");
    if (!get_uint(req, "timeout_s", 86400 * 365, &timeout_s))
        return fail(e, "invalid_argument", "\"timeout_s\" must be a whole number of seconds");
    if ((v = json_object_get(req, "stdout")) && !json_is_null(v)) {
        out_mode = json_string_value(v);
        if (!out_mode || (strcmp(out_mode, "pipe") && strcmp(out_mode, "devnull")))
            return fail(e, "invalid_argument", "\"stdout\" must be \"pipe\" or \"devnull\"");
    }
    if ((v = json_object_get(req, "stderr")) && !json_is_null(v)) {
        err_mode = json_string_value(v);
        if (!err_mode ||
            (strcmp(err_mode, "pipe") && strcmp(err_mode, "devnull") && strcmp(err_mode, "stdout")))
            return fail(e, "invalid_argument",
                        "\"stderr\" must be \"pipe\", \"devnull\" or \"stdout\"");
    }
    if (pty_j && !json_is_null(pty_j)) {
        if (!json_is_object(pty_j) || !get_uint(pty_j, "rows", 65535, &rows) ||
            !get_uint(pty_j, "cols", 65535, &cols) || rows == 0 || cols == 0)
            return fail(e, "invalid_argument", "\"pty\" must be {\"rows\":R,\"cols\":C}");
    }

    cfg.argv = argv;
    cfg.env = env ? env : m->spec.env;
    cfg.workdir = workdir;
    cfg.uid = (uid_t)uid;
    cfg.gid = (gid_t)gid;
    cfg.stdio[0] = cfg.stdio[1] = cfg.stdio[2] = -1;
    if (pty_j && !json_is_null(pty_j)) {
        cfg.pty = true;
        cfg.rows = (unsigned short)rows;
        cfg.cols = (unsigned short)cols;
    } else {
        if (pipe2(in_pipe, O_CLOEXEC) < 0 ||
            (!strcmp(out_mode, "pipe") && pipe2(out_pipe, O_CLOEXEC) < 0) ||
            (!strcmp(err_mode, "pipe") && pipe2(err_pipe, O_CLOEXEC) < 0)) {
            r = errno;
            fail(e, errno_code(r), "pipe: %s", strerror(r));
            goto fail_pipes;
        }
        cfg.stdio[0] = in_pipe[0];
        cfg.stdio[1] = out_pipe[1];
        cfg.stdio[2] = !strcmp(err_mode, "stdout") ? out_pipe[1] : err_pipe[1];
    }

    p = proc_new(m, id, argv_j, cfg.pty);
    if (!p) {
        fail(e, "resource_exhausted", "out of memory");
        goto fail_pipes;
    }
    r = sbx_sandbox_exec_begin(m->sb, &cfg, &pending, &err);
    if (r >= 0)
        r = sbx_sandbox_exec_end(m->sb, &cfg, pending, &p->sp, &err);
    /* The child's ends live in the child now. */
    closep(&in_pipe[0]);
    closep(&out_pipe[1]);
    closep(&err_pipe[1]);
    in_pipe[0] = out_pipe[1] = err_pipe[1] = -1;
    if (r < 0) {
        proc_discard_last(m);
        fail(e, errno_code(-r), "%s", err.message);
        goto fail_pipes;
    }
    p->running = true;
    m->n_running++;
    m->last_activity = now_ms();
    if (timeout_s)
        p->kill_at = now_ms() + (int64_t)timeout_s * 1000;

    r = watch_dup(m, &p->status_w, p->sp.status_pidfd, EPOLLIN);
    if (r >= 0 && cfg.pty) {
        int in = fcntl(p->sp.pty_master, F_DUPFD_CLOEXEC, 3);
        r = in < 0 ? -errno : stream_init(m, p, 0, steal_fd(&p->sp.pty_master));
        if (r >= 0)
            r = stream_init(m, p, 1, -1);
        if (in >= 0) {
            fcntl(in, F_SETFL, fcntl(in, F_GETFL) | O_NONBLOCK);
            p->stdin_w.fd = in;
        }
    } else if (r >= 0) {
        r = stream_init(m, p, 0, steal_fd(&out_pipe[0]));
        if (r >= 0)
            r = stream_init(m, p, 1, steal_fd(&err_pipe[0]));
        p->stdin_w.fd = steal_fd(&in_pipe[1]);
        fcntl(p->stdin_w.fd, F_SETFL, fcntl(p->stdin_w.fd, F_GETFL) | O_NONBLOCK);
    }
    if (r >= 0)
        r = proc_record_start(m, p);
    if (r < 0) {
        /* The process runs but cannot be recorded: it must not run. */
        int rc;
        mlog("process %s: cannot record it: %s", id, strerror(-r));
        syscall(SYS_pidfd_send_signal, p->sp.pidfd, SIGKILL, NULL, 0);
        (void)sbx_process_wait(&p->sp, -1, &rc, NULL);
        closep(&p->sp.pty_master);
        m->n_running--;
        proc_discard_last(m);
        fail(e, errno_code(-r), "record process `%s`: %s", id, strerror(-r));
        goto fail_pipes;
    }
    json_object_set_new(reply, "pid", json_integer(p->sp.pid));
    return 0;

fail_pipes:
    closep(&in_pipe[0]);
    closep(&in_pipe[1]);
    closep(&out_pipe[0]);
    closep(&out_pipe[1]);
    closep(&err_pipe[0]);
    closep(&err_pipe[1]);
    return -1;
}

/* Strict base64 (RFC 4648, padding optional); returns the length or -1. */
static ssize_t base64_decode(const char *in, size_t len, unsigned char *out)
{
    uint32_t acc = 0;
    size_t n = 0, bits = 0, pad = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        int v;

        if (c == '=') {
            pad++;
            continue;
        }
        if (pad)
            return -1; /* data after padding */
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == '+')
            v = 62;
        else if (c == '/')
            v = 63;
        else
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    if (bits >= 6 || pad > 2 || (pad && (len % 4) != 0))
        return -1;
    return (ssize_t)n;
}

static int op_stdin(struct monitor *m, json_t *req, json_t *reply, struct op_error *e)
{
    struct proc *p = proc_of_request(m, req, e);
    json_t *data_j = json_object_get(req, "data"), *eof_j = json_object_get(req, "eof");
    _cleanup_free_ unsigned char *data = NULL;
    size_t len = 0;
    ssize_t n = 0;

    (void)reply;
    if (!p)
        return -1;
    if (data_j && !json_is_null(data_j) && !json_is_string(data_j))
        return fail(e, "invalid_argument", "\"data\" must be a base64 string");
    if (eof_j && !json_is_null(eof_j) && !json_is_boolean(eof_j))
        return fail(e, "invalid_argument", "\"eof\" must be a boolean");
    if (json_is_string(data_j))
        len = json_string_length(data_j);
    if (p->stdin_w.fd < 0 || p->stdin_eof)
        return fail(e, "failed_precondition", "the stdin of process `%s` is closed", p->id);
    if (len) {
        data = malloc(len / 4 * 3 + 3);
        if (!data)
            return fail(e, "resource_exhausted", "out of memory");
        n = base64_decode(json_string_value(data_j), len, data);
        if (n < 0)
            return fail(e, "invalid_argument", "\"data\" is not valid base64");
    }
    if (buffer_pending(&p->stdin_q) + (size_t)n > MAX_STDIN_QUEUE)
        return fail(e, "resource_exhausted",
                    "process `%s` has %zu bytes of stdin not yet read: try again later", p->id,
                    buffer_pending(&p->stdin_q));
    if (n > 0 && buffer_append(&p->stdin_q, data, (size_t)n) < 0)
        return fail(e, "resource_exhausted", "out of memory");
    if (json_is_true(eof_j))
        p->stdin_eof = true;
    m->last_activity = now_ms();
    stdin_flush(m, p);
    return 0;
}

static int op_signal(struct monitor *m, json_t *req, json_t *reply, struct op_error *e)
{
    struct proc *p = proc_of_request(m, req, e);
    json_t *sig = json_object_get(req, "signal");
    int fd;

    (void)reply;
    if (!p)
        return -1;
    if (!json_is_integer(sig) || json_integer_value(sig) < 1 || json_integer_value(sig) > 64)
        return fail(e, "invalid_argument", "\"signal\" must be a signal number");
    if (p->is_entrypoint) {
        /* Init forwards signals to the entrypoint. */
        if (m->state != MON_RUNNING)
            return fail(e, "failed_precondition", "the sandbox has finished");
        fd = sbx_sandbox_pidfd(m->sb);
    } else {
        if (!p->running)
            return fail(e, "failed_precondition", "process `%s` has exited", p->id);
        fd = p->sp.pidfd;
    }
    if (syscall(SYS_pidfd_send_signal, fd, (int)json_integer_value(sig), NULL, 0) < 0 &&
        errno != ESRCH)
        return fail(e, errno_code(errno), "signal process `%s`: %s", p->id, strerror(errno));
    return 0;
}

static int op_resize(struct monitor *m, json_t *req, json_t *reply, struct op_error *e)
{
    struct proc *p = proc_of_request(m, req, e);
    uint64_t rows = 0, cols = 0;
    sbx_error err = {0};

    (void)reply;
    if (!p)
        return -1;
    if (!get_uint(req, "rows", 65535, &rows) || !get_uint(req, "cols", 65535, &cols) || !rows ||
        !cols)
        return fail(e, "invalid_argument", "\"rows\" and \"cols\" must be 1..65535");
    if (!p->pty)
        return fail(e, "failed_precondition", "process `%s` has no terminal", p->id);
    if (p->out[0].w.fd < 0)
        return fail(e, "failed_precondition", "process `%s` has exited", p->id);
    if (sbx_pty_resize(p->out[0].w.fd, (unsigned short)rows, (unsigned short)cols, &err) < 0)
        return fail(e, errno_code(err.code), "%s", err.message);
    return 0;
}

static int op_terminate(struct monitor *m, json_t *req, json_t *reply, struct op_error *e)
{
    (void)req, (void)reply, (void)e;
    terminate_with(m, "terminated");
    return 0;
}

static int op_stats(struct monitor *m, json_t *req, json_t *reply, struct op_error *e)
{
    struct sbx_stats st = {0};
    sbx_error err = {0};

    (void)req;
    if (m->state != MON_RUNNING)
        return fail(e, "failed_precondition", "the sandbox has finished");
    if (sbx_sandbox_stats(m->sb, &st, &err) < 0)
        return fail(e, errno_code(err.code), "%s", err.message);
    json_object_set_new(
        reply, "stats",
        json_pack("{s:I,s:I,s:I,s:I,s:I}", "cpu_usage_ns", (json_int_t)st.cpu_usage_ns,
                  "memory_current", (json_int_t)st.memory_current, "memory_peak",
                  (json_int_t)st.memory_peak, "pids_current", (json_int_t)st.pids_current,
                  "oom_kills", (json_int_t)st.oom_kills));
    return 0;
}

/* {"op":"mount_image","path":ABS,"layers":[ABS..]}: an image (or, with no
 * layers, an empty directory) mounted into the running sandbox. */
static int op_mount_image(struct monitor *m, json_t *req, json_t *reply, struct op_error *e)
{
    const char *path = json_string_value(json_object_get(req, "path"));
    const char **layers;
    sbx_error err = {0};
    bool ok = true;
    int r;

    (void)reply;
    if (m->state != MON_RUNNING || !m->sb)
        return fail(e, "failed_precondition", "the sandbox has finished");
    layers = strv_of(json_object_get(req, "layers"), false, false, &ok);
    if (!path || path[0] != '/' || !ok) {
        free(layers);
        return fail(e, "invalid_argument", "\"path\" must be absolute, \"layers\" paths");
    }
    r = sbx_sandbox_mount_image(m->sb, layers, path, &err);
    free(layers);
    if (r < 0)
        return fail(e,
                    err.code == EINVAL || err.code == ELOOP || err.code == ENOTDIR ||
                            err.code == EISDIR
                        ? "invalid_argument"
                        : errno_code(err.code),
                    "%s", err.message);
    mlog("mounted %s at %s",
         json_array_size(json_object_get(req, "layers")) ? "an image" : "a directory", path);
    return 0;
}

static int op_activity(struct monitor *m, json_t *req, json_t *reply, struct op_error *e)
{
    (void)req, (void)reply, (void)e;
    m->last_activity = now_ms();
    return 0;
}

static int op_status(struct monitor *m, json_t *req, json_t *reply, struct op_error *e)
{
    json_t *procs = json_array();

    (void)req, (void)e;
    for (size_t i = 0; i < m->n_procs; i++) {
        struct proc *p = m->procs[i];
        /* Small entries: the reply must stay under the 1 MiB message
         * limit with MAX_PROCS processes; the rest is in the files. */
        json_array_append_new(procs,
                              json_pack("{s:s,s:o}", "id", p->id, "returncode",
                                        p->exited ? json_integer(p->returncode) : json_null()));
    }
    json_object_set_new(reply, "state",
                        json_string(m->state == MON_RUNNING ? "running" : "finished"));
    json_object_set_new(reply, "processes", procs);
    /* For the daemon's files API, which reaches the sandbox's root through
     * /proc/PID/root. */
    if (m->sb && m->state == MON_RUNNING)
        json_object_set_new(reply, "init_pid", json_integer(sbx_sandbox_pid(m->sb)));
    if (m->n_tunnels)
        json_object_set_new(reply, "tunnels", tunnels_json(m));
    if (m->state != MON_RUNNING) {
        json_object_set_new(reply, "returncode",
                            m->returncode >= 0 ? json_integer(m->returncode) : json_null());
        json_object_set_new(reply, "finish_reason", json_string(m->finish_reason));
    }
    return 0;
}

/* Puts a pooled sandbox to use: the request's limits, environment, workdir
 * and timeouts, and its entrypoint started now (init was idling).  The
 * reply is a "status" one.  A claim whose entrypoint cannot start ends the
 * sandbox as "error", as a create with that entrypoint would have. */
static int op_claim(struct monitor *m, json_t *req, json_t *reply, struct op_error *e)
{
    static const char *const keys[] = {
        "env",        "entrypoint",   "workdir",       "memory_bytes", "pids_max",
        "cpu_weight", "cpu_quota_us", "cpu_period_us", "timeout_s",    "idle_timeout_s"};
    int pipes[3][2] = {{-1, -1}, {-1, -1}, {-1, -1}};
    json_t *env_j = json_object_get(req, "env"), *ep_j = json_object_get(req, "entrypoint"), *v;
    _cleanup_free_ const char **env = NULL, **argv = NULL;
    const char *workdir = "/";
    struct sbx_limits lim = {0};
    uint64_t timeout_s = 0, idle_s = 0, pids = 0;
    sbx_error err = {0};
    bool ok;
    int r = 0;

    if (m->state != MON_RUNNING || m->terminating)
        return fail(e, "failed_precondition", "the sandbox has finished");
    if (!m->spec.pooled)
        return fail(e, "failed_precondition", "the sandbox is not pooled: it was claimed");
    env = strv_of(env_j, false, true, &ok);
    if (!ok)
        return fail(e, "invalid_argument", "\"env\" must be an array of \"K=V\" strings");
    if (ep_j && !json_is_null(ep_j)) {
        argv = strv_of(ep_j, true, false, &ok);
        if (!ok)
            return fail(e, "invalid_argument",
                        "\"entrypoint\" must be null or a non-empty array of strings");
    }
    if ((v = json_object_get(req, "workdir")) && !json_is_null(v)) {
        workdir = json_string_value(v);
        if (!workdir || workdir[0] != '/')
            return fail(e, "invalid_argument", "\"workdir\" must be an absolute path");
    }
    if (!get_uint(req, "memory_bytes", INT64_MAX, &lim.memory_bytes) ||
        !get_uint(req, "pids_max", INT64_MAX, &pids) ||
        !get_uint(req, "cpu_weight", 10000, &lim.cpu_weight) ||
        !get_uint(req, "cpu_quota_us", INT64_MAX, &lim.cpu_quota_us) ||
        !get_uint(req, "cpu_period_us", INT64_MAX, &lim.cpu_period_us) ||
        !get_uint(req, "timeout_s", 86400ULL * 365, &timeout_s) ||
        !get_uint(req, "idle_timeout_s", 86400ULL * 365, &idle_s))
        return fail(e, "invalid_argument", "limits and timeouts must be whole numbers");
    lim.pids_max = (int64_t)pids;
    if (sbx_sandbox_set_limits(m->sb, &lim, &err) < 0)
        return fail(e, errno_code(err.code), "%s", err.message);

    if (argv) {
        struct sbx_exec_config cfg = {.argv = argv,
                                      .env = env,
                                      .workdir = workdir,
                                      .uid = m->spec.uid,
                                      .gid = m->spec.gid,
                                      .entrypoint = true};
        struct proc *ep;
        int pending = -1;

        for (int i = 0; i < 3; i++)
            if (pipe2(pipes[i], O_CLOEXEC) < 0) {
                r = -errno;
                fail(e, errno_code(-r), "pipe: %s", strerror(-r));
                goto out;
            }
        cfg.stdio[0] = pipes[0][0];
        cfg.stdio[1] = pipes[1][1];
        cfg.stdio[2] = pipes[2][1];
        ep = proc_new(m, SBXD_ENTRYPOINT_ID, ep_j, false);
        if (!ep) {
            r = -ENOMEM;
            fail(e, "resource_exhausted", "out of memory");
            goto out;
        }
        r = sbx_sandbox_exec_begin(m->sb, &cfg, &pending, &err);
        if (r >= 0)
            r = sbx_sandbox_exec_end(m->sb, &cfg, pending, &ep->sp, &err);
        for (int i = 0; i < 3; i++) {
            closep(&pipes[i][i ? 1 : 0]);
            pipes[i][i ? 1 : 0] = -1;
        }
        if (r < 0) {
            proc_discard_last(m);
            fail(e, errno_code(-r), "%s", err.message);
            goto out;
        }
        /* Its returncode is the sandbox's: the status socket has nothing
         * to say (init closes it), and signals go through init. */
        closep(&ep->sp.status_pidfd);
        ep->sp.status_pidfd = -1;
        r = entrypoint_adopt(m, ep, pipes);
        if (r >= 0)
            r = proc_record_start(m, ep);
        if (r < 0) {
            fail(e, errno_code(-r), "record the entrypoint: %s", strerror(-r));
            goto out;
        }
    }

    /* From now on the spec is the claim's. */
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        json_object_set(m->spec.root, keys[i], json_object_get(req, keys[i]) ?: json_null());
    json_object_set_new(m->spec.root, "pooled", json_false());
    free(m->spec.env);
    m->spec.env = env;
    env = NULL;
    free(m->spec.entrypoint);
    m->spec.entrypoint = argv;
    argv = NULL;
    m->spec.workdir = json_string_value(json_object_get(m->spec.root, "workdir")) ?: "/";
    m->spec.limits = lim;
    m->spec.timeout_s = timeout_s;
    m->spec.idle_timeout_s = idle_s;
    m->spec.pooled = false;
    m->last_activity = now_ms();
    m->deadline = timeout_s ? now_ms() + (int64_t)timeout_s * 1000 : 0;
    append_simple_event(m, "scheduled");
    append_simple_event(m, "started");
    probe_start(m);
    mlog("claimed%s", m->spec.entrypoint ? ", entrypoint started" : "");
    r = op_status(m, req, reply, e);
out:
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++)
            closep(&pipes[i][j]);
    if (r < 0) {
        _cleanup_json_ json_t *ev =
            json_pack("{s:s,s:f,s:s}", "event", "error", "at", now_real(), "message", e->message);
        if (ev)
            append_event(m, ev);
        mlog("claim failed: %s", e->message);
        terminate_with(m, "error");
        return -1;
    }
    return 0;
}

static int op_shutdown(struct monitor *m, json_t *req, json_t *reply, struct op_error *e)
{
    (void)req, (void)reply, (void)e;
    /* Finishing destroys the sandbox and ends the monitor anyway. */
    terminate_with(m, "terminated");
    return 0;
}

static const struct {
    const char *name;
    int (*fn)(struct monitor *m, json_t *req, json_t *reply, struct op_error *e);
} ops[] = {
    {"exec", op_exec},
    {"stdin", op_stdin},
    {"signal", op_signal},
    {"resize", op_resize},
    {"terminate", op_terminate},
    {"stats", op_stats},
    {"activity", op_activity},
    {"status", op_status},
    {"shutdown", op_shutdown},
    {"claim", op_claim},
    {"mount_image", op_mount_image},
};

static void handle_line(struct monitor *m, const char *line, size_t len)
{
    json_error_t jerr;
    _cleanup_json_ json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *seq = json_object_get(req, "seq"), *reply;
    const char *op = json_string_value(json_object_get(req, "op"));
    struct op_error e = {.code = "internal"};
    size_t i;

    /* What was queued goes before a request that may take a while. */
    if (m->flush_due) {
        m->flush_due = false;
        client_flush(m);
    }
    if (!json_is_integer(seq))
        seq = NULL;
    if (!json_is_object(req)) {
        fail(&e, "invalid_argument", "not a JSON object%s%s", req ? "" : ": ",
             req ? "" : jerr.text);
    } else if (!seq) {
        fail(&e, "invalid_argument", "\"seq\" must be an integer");
    } else if (!op) {
        fail(&e, "invalid_argument", "\"op\" must be a string");
    } else {
        for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
            if (!strcmp(ops[i].name, op))
                break;
        if (i == sizeof(ops) / sizeof(ops[0])) {
            fail(&e, "invalid_argument", "unknown op `%.64s`", op);
        } else if ((reply = json_object())) {
            if (ops[i].fn(m, req, reply, &e) >= 0) {
                json_object_set(reply, "seq", seq);
                json_object_set_new(reply, "ok", json_true());
                client_send(m, reply);
                return;
            }
            json_decref(reply);
        }
    }
    client_send(m, json_pack("{s:O,s:b,s:{s:s,s:s}}", "seq", seq ? seq : json_null(), "ok", 0,
                             "error", "code", e.code, "message", e.message));
}

static void client_read(struct monitor *m, struct client *c)
{
    char buf[READ_CHUNK];
    ssize_t n;

    do
        n = recv(c->w.fd, buf, sizeof(buf), MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (n <= 0) {
        client_drop(m, n == 0 ? "it disconnected" : strerror(errno));
        return;
    }
    if (buffer_append(&c->in, buf, (size_t)n) < 0) {
        client_drop(m, "out of memory");
        return;
    }
    for (;;) {
        char *start = c->in.data + c->in.off;
        size_t pending = buffer_pending(&c->in);
        char *nl = memchr(start, '\n', pending);

        if (!nl) {
            if (pending > SBXD_MONITOR_MAX_MESSAGE)
                client_drop(m, "a message longer than 1 MiB");
            return;
        }
        c->in.off += (size_t)(nl - start) + 1;
        if ((size_t)(nl - start) > SBXD_MONITOR_MAX_MESSAGE) {
            client_drop(m, "a message longer than 1 MiB");
            return;
        }
        if (nl > start && !(nl - start == 1 && start[0] == '\r'))
            handle_line(m, start, (size_t)(nl - start));
        if (c->dead)
            return;
    }
}

/* Makes fd (a connected, non-blocking socket; taken) the client.  One
 * daemon at a time: the newest is the one that is alive. */
static int client_adopt(struct monitor *m, int fd)
{
    struct client *c;
    int r;

    client_drop(m, "a new client connected");
    c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return -ENOMEM;
    }
    c->w.kind = W_CLIENT;
    r = watch_add(m, &c->w, fd, EPOLLIN);
    if (r < 0) {
        free(c);
        close(fd);
        return r;
    }
    m->client = c;
    return 0;
}

static void client_accept(struct monitor *m)
{
    int fd = accept4(m->listen_w.fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK), r;

    if (fd < 0) {
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
            mlog("accept: %s", strerror(errno));
        return;
    }
    r = client_adopt(m, fd);
    if (r < 0)
        mlog("accept: %s", strerror(-r));
}

/* ---- deadlines ---- */

static int64_t min_deadline(int64_t a, int64_t b)
{
    return !a ? b : !b ? a : a < b ? a : b;
}

/* The next moment something is due, 0 for none; does what is due now. */
/* ---- sockets in the sandbox's network ---- */

/* A TCP socket made in the sandbox's network namespace: the monitor is
 * single-threaded, so it steps in with setns for the socket() call and
 * straight out again; the socket stays the sandbox's network's. */
static int sandbox_socket(struct monitor *m)
{
    int fd;

    if (!m->sb)
        return -1;
    if (m->sb_netns_fd < 0) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)sbx_sandbox_pid(m->sb));
        m->sb_netns_fd = open(path, O_RDONLY | O_CLOEXEC);
        if (m->own_netns_fd < 0)
            m->own_netns_fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (m->sb_netns_fd < 0 || m->own_netns_fd < 0)
            return -1;
    }
    if (setns(m->sb_netns_fd, CLONE_NEWNET) < 0)
        return -1;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (setns(m->own_netns_fd, CLONE_NEWNET) < 0) {
        /* Never carry on in the sandbox's network. */
        mlog("return to our own network namespace: %s", strerror(errno));
        abort();
    }
    return fd;
}

/* A non-blocking connection from the sandbox's network to PORT on its
 * loopback: the socket, *connected when already done (else in progress),
 * or -1 when it failed at once (nothing listens there). */
static int sandbox_connect(struct monitor *m, int port, bool *connected)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = sandbox_socket(m);

    if (fd < 0)
        return -1;
    *connected = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (!*connected && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- tunnels ---- */

/* One connection through a tunnel: a client on the host, and the server
 * on the sandbox's loopback.  Each direction has one buffer, filled by a
 * read only when empty and drained by writes (back-pressure both ways); an
 * EOF is passed on as a half-close once its buffer has drained.  On a tls
 * port the client's side is a TLS session (the daemon's certificate) and
 * the server sees plain TCP, as behind Modal's encrypted ports. */
struct tconn {
    struct watch c, s;    /* the client's socket, the sandbox's */
    gnutls_session_t tls; /* the client's side on a tls port, or NULL */
    bool handshaking;     /* tls: before the handshake is done */
    char c2s[TUNNEL_BUF], s2c[TUNNEL_BUF];
    size_t c2s_off, c2s_len, s2c_off, s2c_len;
    bool c_eof, s_eof, c_shut, s_shut, connecting, dead;
    struct tconn *next, *next_dead;
};

/* One side of a connection: its socket, and its TLS session if any. */
struct tconn_end {
    int fd;
    gnutls_session_t tls;
};

static ssize_t tls_result(ssize_t r)
{
    switch (r) {
    case GNUTLS_E_AGAIN:
        errno = EAGAIN;
        return -1;
    case GNUTLS_E_INTERRUPTED:
        errno = EINTR;
        return -1;
    case GNUTLS_E_PREMATURE_TERMINATION: /* a TCP EOF without close_notify */
        return 0;
    default:
        if (r < 0) {
            errno = EPROTO;
            return -1;
        }
        return r;
    }
}

static ssize_t end_recv(struct tconn_end e, char *buf, size_t n)
{
    if (e.tls)
        return tls_result(gnutls_record_recv(e.tls, buf, n));
    return read(e.fd, buf, n);
}

static ssize_t end_send(struct tconn_end e, const char *buf, size_t n)
{
    if (e.tls)
        return tls_result(gnutls_record_send(e.tls, buf, n));
    return send(e.fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* Bytes a TLS session has decrypted and not yet given: no epoll event
 * will tell of them. */
static bool end_pending(struct tconn_end e)
{
    return e.tls && gnutls_record_check_pending(e.tls) > 0;
}

/* The half-close: close_notify first on TLS.  Returns false to try again. */
static bool end_shutdown(struct tconn_end e)
{
    if (e.tls) {
        int r = gnutls_bye(e.tls, GNUTLS_SHUT_WR);
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
            return false;
    }
    shutdown(e.fd, SHUT_WR);
    return true;
}

static void tconn_events(struct monitor *m, struct tconn *t)
{
    uint32_t ce = 0, se = 0;

    if (t->dead)
        return;
    if (t->handshaking) {
        ce = gnutls_record_get_direction(t->tls) ? EPOLLOUT : EPOLLIN;
    } else {
        if (!t->c_eof && t->c2s_len == 0 && !t->connecting)
            ce |= EPOLLIN;
        /* (or a close_notify that could not go out yet) */
        if (t->s2c_len > t->s2c_off || (t->s_eof && !t->c_shut))
            ce |= EPOLLOUT;
    }
    if (t->connecting || t->c2s_len > t->c2s_off)
        se |= EPOLLOUT;
    /* (nothing from the server can go on before the handshake is done) */
    if (!t->s_eof && t->s2c_len == 0 && !t->connecting && !t->handshaking)
        se |= EPOLLIN;
    watch_mod(m, &t->c, ce);
    watch_mod(m, &t->s, se);
}

static void tconn_close(struct monitor *m, struct tconn *t)
{
    struct tconn **pp = &m->tconns;

    if (t->dead)
        return;
    t->dead = true;
    if (t->tls)
        gnutls_deinit(t->tls);
    t->tls = NULL;
    watch_close(m, &t->c);
    watch_close(m, &t->s);
    while (*pp && *pp != t)
        pp = &(*pp)->next;
    if (*pp)
        *pp = t->next;
    /* Freed after the epoll batch: another event of it may be in it. */
    t->next_dead = m->dead_tconns;
    m->dead_tconns = t;
    /* An open connection was activity; its end starts the idle clock. */
    if (m->n_tconns > 0 && --m->n_tconns == 0)
        m->last_activity = now_ms();
}

static void tconns_free_dead(struct monitor *m)
{
    while (m->dead_tconns) {
        struct tconn *t = m->dead_tconns;
        m->dead_tconns = t->next_dead;
        free(t);
    }
}

/* Moves bytes one way: from `from` into buf (when empty), from buf to `to`;
 * passes an EOF on.  A send that would block is retried by the next call
 * with the same bytes (as TLS requires).  Returns false when the
 * connection must close. */
static bool tconn_pump(struct tconn_end from, struct tconn_end to, char *buf, size_t *off,
                       size_t *len, bool *eof, bool *shut, bool can_read, bool can_write)
{
    ssize_t n;

    /* Reads again while a TLS session holds decrypted bytes and they
     * could go on at once; a bound keeps one connection from holding the
     * loop. */
    for (int round = 0; round < 16; round++) {
        if (can_write && *len > *off) {
            n = end_send(to, buf + *off, *len - *off);
            if (n > 0) {
                *off += (size_t)n;
                if (*off == *len)
                    *off = *len = 0;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                return false;
            } else {
                can_write = false;
            }
        }
        if (*len > 0 || *eof || !(can_read || end_pending(from)))
            break;
        n = end_recv(from, buf, TUNNEL_BUF);
        if (n > 0) {
            *off = 0;
            *len = (size_t)n;
        } else if (n == 0) {
            *eof = true;
        } else if (errno != EAGAIN && errno != EINTR) {
            return false;
        }
        can_read = false;
        if (n <= 0)
            break;
    }
    if (*eof && *len == 0 && !*shut)
        *shut = end_shutdown(to);
    return true;
}

/* The TLS handshake, as far as the socket lets it go.  Returns false when
 * it failed. */
static bool tconn_handshake(struct tconn *t)
{
    int r;

    do
        r = gnutls_handshake(t->tls);
    while (r < 0 && r != GNUTLS_E_AGAIN && !gnutls_error_is_fatal(r));
    if (r == 0)
        t->handshaking = false;
    return r == 0 || r == GNUTLS_E_AGAIN;
}

static void tconn_event(struct monitor *m, struct tconn *t, bool server, uint32_t events)
{
    struct tconn_end c = {t->c.fd, t->tls}, s = {t->s.fd, NULL};
    bool ok = true;

    if (t->dead)
        return;
    if (server && t->connecting) {
        int so_error = 0;
        socklen_t len = sizeof(so_error);

        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        getsockopt(t->s.fd, SOL_SOCKET, SO_ERROR, &so_error, &len);
        if (so_error) {
            tconn_close(m, t);
            return;
        }
        t->connecting = false;
    }
    if ((events & EPOLLERR) || ((events & EPOLLHUP) && !(events & EPOLLIN))) {
        tconn_close(m, t);
        return;
    }
    if (t->handshaking) {
        if (!server && !tconn_handshake(t)) {
            tconn_close(m, t);
            return;
        }
        if (t->handshaking) {
            tconn_events(m, t);
            return;
        }
        /* Done: what the client sent with its Finished may be waiting. */
        if (!t->connecting)
            events |= EPOLLIN | EPOLLOUT;
    }
    /* client → sandbox, then sandbox → client */
    ok = tconn_pump(c, s, t->c2s, &t->c2s_off, &t->c2s_len, &t->c_eof, &t->s_shut,
                    !server && (events & EPOLLIN), server ? (events & EPOLLOUT) != 0 : true) &&
         tconn_pump(s, c, t->s2c, &t->s2c_off, &t->s2c_len, &t->s_eof, &t->c_shut,
                    server && (events & EPOLLIN), !server ? (events & EPOLLOUT) != 0 : true);
    if (!ok || (t->c_shut && t->s_shut)) {
        tconn_close(m, t);
        return;
    }
    tconn_events(m, t);
}

/* A client at a tunnel's host port: a connection to the port on the
 * sandbox's loopback, made from its network namespace. */
static void tunnel_accept(struct monitor *m, struct tunnel *tu)
{
    int c = accept4(tu->w.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), s;
    bool connected;
    struct tconn *t;

    if (c < 0)
        return;
    /* Nothing listening there: the client learns it by the close. */
    s = sandbox_connect(m, tu->port, &connected);
    t = calloc(1, sizeof(*t));
    if (s < 0 || !t) {
        close(c);
        if (s >= 0)
            close(s);
        free(t);
        return;
    }
    t->c = (struct watch){.kind = W_TCONN_CLIENT, .fd = -1};
    t->s = (struct watch){.kind = W_TCONN_SERVER, .fd = -1};
    /* Done or not, the first EPOLLOUT tells (SO_ERROR). */
    t->connecting = true;
    if (tu->tls) {
        /* The client speaks first (its hello): wait for it. */
        if (gnutls_init(&t->tls, GNUTLS_SERVER | GNUTLS_NONBLOCK) < 0) {
            t->tls = NULL;
            goto fail;
        }
        if (gnutls_credentials_set(t->tls, GNUTLS_CRD_CERTIFICATE, m->tls_cred) < 0 ||
            gnutls_set_default_priority(t->tls) < 0)
            goto fail;
        gnutls_certificate_server_set_request(t->tls, GNUTLS_CERT_IGNORE);
        gnutls_transport_set_int(t->tls, c);
        t->handshaking = true;
    }
    if (watch_add(m, &t->c, c, t->tls ? EPOLLIN : 0) < 0 || watch_add(m, &t->s, s, EPOLLOUT) < 0)
        goto fail;
    t->next = m->tconns;
    m->tconns = t;
    m->n_tconns++;
    m->last_activity = now_ms();
    return;
fail:
    if (t->tls)
        gnutls_deinit(t->tls);
    if (t->c.fd < 0)
        close(c);
    watch_close(m, &t->c);
    if (t->s.fd < 0)
        close(s);
    watch_close(m, &t->s);
    free(t);
}

static json_t *tunnels_json(struct monitor *m)
{
    json_t *o = json_object();

    for (size_t i = 0; i < m->n_tunnels; i++) {
        char key[8], url[64];
        snprintf(key, sizeof(key), "%d", m->tunnels[i].port);
        snprintf(url, sizeof(url), "%s://%s:%d", m->tunnels[i].tls ? "https" : "http",
                 m->spec.tunnel_bind, m->tunnels[i].host_port);
        json_object_set_new(o, key,
                            json_pack("{s:s,s:i,s:s,s:b}", "host", m->spec.tunnel_bind, "port",
                                      m->tunnels[i].host_port, "url", url, "tls",
                                      m->tunnels[i].tls));
    }
    return o;
}

/* A host listener per port (tunnel_bind, a free port), recorded in
 * tunnels.json and told to the daemon. */
static int tunnels_start(struct monitor *m, char *why, size_t why_len)
{
    int r;

    for (size_t i = 0; i < m->spec.n_ports && !m->tls_cred; i++) {
        if (!m->spec.ports_tls[i])
            continue;
        if (tls_dl_load(why, why_len) < 0)
            return -1;
        if ((r = gnutls_certificate_allocate_credentials(&m->tls_cred)) < 0 ||
            (r = gnutls_certificate_set_x509_key_file(m->tls_cred, m->spec.tls_cert,
                                                      m->spec.tls_key, GNUTLS_X509_FMT_PEM)) < 0) {
            snprintf(why, why_len, "tls tunnels: certificate %s, key %s: %s", m->spec.tls_cert,
                     m->spec.tls_key, gnutls_strerror(r));
            return -1;
        }
    }
    for (size_t i = 0; i < m->spec.n_ports; i++) {
        struct sockaddr_in sa = {.sin_family = AF_INET};
        socklen_t len = sizeof(sa);
        struct tunnel *tu = &m->tunnels[m->n_tunnels];
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

        inet_pton(AF_INET, m->spec.tunnel_bind, &sa.sin_addr);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0 ||
            getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
            snprintf(why, why_len, "tunnel for port %d on %s: %s", m->spec.ports[i],
                     m->spec.tunnel_bind, strerror(errno));
            if (fd >= 0)
                close(fd);
            return -1;
        }
        tu->w = (struct watch){.kind = W_TUNNEL, .fd = -1};
        tu->port = m->spec.ports[i];
        tu->tls = m->spec.ports_tls[i];
        tu->host_port = ntohs(sa.sin_port);
        if (watch_add(m, &tu->w, fd, EPOLLIN) < 0) {
            close(fd);
            snprintf(why, why_len, "watch a tunnel: %s", strerror(errno));
            return -1;
        }
        m->n_tunnels++;
    }
    if (m->n_tunnels) {
        _cleanup_json_ json_t *t = tunnels_json(m);
        (void)write_json_at(m->records_fd, "tunnels.json", t, false);
        client_send(m, json_pack("{s:s,s:O}", "ev", "tunnels", "tunnels", t));
        mlog("%zu tunnel%s open", m->n_tunnels, m->n_tunnels == 1 ? "" : "s");
    }
    return 0;
}

/* The sandbox has ended: no more listeners, no connection. */
static void tunnels_stop(struct monitor *m)
{
    for (size_t i = 0; i < m->n_tunnels; i++)
        watch_close(m, &m->tunnels[i].w);
    m->n_tunnels = 0;
    while (m->tconns)
        tconn_close(m, m->tconns);
    if (m->tls_cred)
        gnutls_certificate_free_credentials(m->tls_cred);
    m->tls_cred = NULL;
    closep(&m->sb_netns_fd);
    m->sb_netns_fd = -1;
}

/* ---- the readiness probe ---- */

/* A probe that has not passed by then stops; the sandbox runs on. */
#define PROBE_GIVE_UP_MS (5 * 60 * 1000)

static void probe_stop(struct monitor *m)
{
    if (m->probe.running) {
        syscall(SYS_pidfd_send_signal, m->probe.sp.pidfd, SIGKILL, NULL, 0);
        watch_close(m, &m->probe.w);
        closep(&m->probe.sp.pidfd);
        closep(&m->probe.sp.status_pidfd);
        m->probe.sp.pidfd = m->probe.sp.status_pidfd = -1;
        m->probe.running = false;
    }
    m->probe.active = false;
}

/* Starts probing (the sandbox has started: created, or claimed). */
static void probe_start(struct monitor *m)
{
    m->probe.w = (struct watch){.kind = W_PROBE, .fd = -1};
    m->probe.sp = (struct sbx_process){.pidfd = -1, .pty_master = -1, .status_pidfd = -1};
    if (!m->spec.probe_tcp && !m->spec.probe_exec)
        return;
    m->probe.active = true;
    m->probe.next_at = now_ms();
    m->probe.give_up_at = m->probe.next_at + PROBE_GIVE_UP_MS;
}

static void probe_passed(struct monitor *m)
{
    probe_stop(m);
    mlog("ready: the readiness probe passed");
    append_simple_event(m, "ready");
    client_send(m, json_pack("{s:s,s:s,s:f}", "ev", "event", "event", "ready", "at", now_real()));
}

/* A TCP connection to the port on the sandbox's own loopback. */
static bool probe_tcp(struct monitor *m)
{
    bool connected;
    int fd = sandbox_connect(m, m->spec.probe_tcp, &connected), so_error = -1;
    socklen_t len = sizeof(so_error);

    if (fd < 0)
        return false;
    if (connected) {
        so_error = 0;
    } else {
        /* On loopback the answer is a matter of microseconds. */
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        if (poll(&pf, 1, 50) == 1)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len);
    }
    close(fd);
    return so_error == 0;
}

static void probe_run(struct monitor *m)
{
    struct sbx_exec_config cfg = {.argv = m->spec.probe_exec,
                                  .env = m->spec.env,
                                  .workdir = m->spec.workdir,
                                  .uid = m->spec.uid,
                                  .gid = m->spec.gid,
                                  .stdio = {-1, -1, -1}};
    sbx_error err = {0};

    if (m->spec.probe_tcp) {
        if (probe_tcp(m))
            probe_passed(m);
        return;
    }
    /* An exec probe: its output goes nowhere, it is no activity. */
    if (sbx_sandbox_exec(m->sb, &cfg, &m->probe.sp, &err) < 0) {
        mlog("readiness probe: %s", err.message);
        return;
    }
    if (watch_dup(m, &m->probe.w, m->probe.sp.status_pidfd, EPOLLIN) < 0) {
        syscall(SYS_pidfd_send_signal, m->probe.sp.pidfd, SIGKILL, NULL, 0);
        closep(&m->probe.sp.pidfd);
        closep(&m->probe.sp.status_pidfd);
        m->probe.sp.pidfd = m->probe.sp.status_pidfd = -1;
        return;
    }
    m->probe.running = true;
}

/* The probe command's end. */
static void probe_reaped(struct monitor *m)
{
    int rc = -1;

    if (sbx_process_wait(&m->probe.sp, 0, &rc, NULL) == 0)
        return;
    watch_close(m, &m->probe.w);
    m->probe.running = false;
    if (rc == 0)
        probe_passed(m);
}

static int64_t run_deadlines(struct monitor *m)
{
    int64_t now = now_ms(), next = 0;

    if (m->state == MON_RUNNING && !m->terminating) {
        int64_t idle_at = 0;
        if (m->deadline && now >= m->deadline)
            terminate_with(m, "timeout");
        /* Activity: an exec running, stdin written, a tunnel connection open. */
        if (m->spec.idle_timeout_s && m->n_running == 0 && m->n_tconns == 0) {
            idle_at = m->last_activity + (int64_t)m->spec.idle_timeout_s * 1000;
            if (now >= idle_at)
                terminate_with(m, "idle_timeout");
        }
        if (!m->terminating)
            next = min_deadline(m->deadline, idle_at);
    }
    if (m->probe.active && m->state == MON_RUNNING && !m->terminating) {
        if (now >= m->probe.give_up_at) {
            mlog("readiness probe: not passed in %d s: given up (the sandbox runs on)",
                 PROBE_GIVE_UP_MS / 1000);
            probe_stop(m);
        } else {
            if (now >= m->probe.next_at && !m->probe.running) {
                m->probe.next_at = now + m->spec.probe_interval_ms;
                probe_run(m);
            }
            if (m->probe.active)
                next = min_deadline(next, min_deadline(m->probe.next_at, m->probe.give_up_at));
        }
    } else if (m->probe.active) {
        probe_stop(m);
    }
    for (struct proc *p = m->live, *next_p; p; p = next_p) {
        next_p = p->live_next == m->live ? NULL : p->live_next;
        if (p->running && p->kill_at) {
            if (now >= p->kill_at) {
                mlog("process %s: timed out: killing it", p->id);
                syscall(SYS_pidfd_send_signal, p->sp.pidfd, SIGKILL, NULL, 0);
                p->kill_at = 0;
            } else {
                next = min_deadline(next, p->kill_at);
            }
        }
        if (p->grace_until) {
            if (now >= p->grace_until)
                proc_maybe_done(m, p);
            else
                next = min_deadline(next, p->grace_until);
        }
        for (int s = 0; s < 2 && m->client; s++) {
            struct stream *st = &p->out[s];
            if (st->size == st->announced)
                continue;
            if (now - st->announced_at >= ANNOUNCE_MS)
                announce(m, st, now);
            else
                next = min_deadline(next, st->announced_at + ANNOUNCE_MS);
        }
        if (proc_settled(p))
            live_remove(m, p);
    }
    if (m->state == MON_FINISHING) {
        if (finish_ready(m))
            finish_complete(m);
        else
            next = min_deadline(next, m->finish_deadline);
    }
    return next;
}

static void arm_timer(struct monitor *m, int64_t at)
{
    struct itimerspec its = {0};

    if (at == m->timer_armed)
        return; /* one syscall fewer on most turns of the loop */
    m->timer_armed = at;

    if (at > 0) {
        its.it_value.tv_sec = at / 1000;
        its.it_value.tv_nsec = (at % 1000) * 1000000;
    }
    if (timerfd_settime(m->timer_w.fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
        mlog("timerfd_settime: %s", strerror(errno));
}

/* ---- the loop ---- */

static void dispatch(struct monitor *m, struct watch *w, uint32_t events)
{
    switch (w->kind) {
    case W_LISTEN:
        client_accept(m);
        break;
    case W_CLIENT: {
        struct client *c = (struct client *)w;
        if (c->dead)
            break;
        if (events & EPOLLOUT)
            client_flush(m);
        if (!c->dead && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
            client_read(m, c);
        break;
    }
    case W_SANDBOX:
    case W_OOM:
        sandbox_check(m);
        break;
    case W_SIGNAL: {
        struct signalfd_siginfo si;
        if (read(w->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
            mlog("signal %u: terminating", si.ssi_signo);
            terminate_with(m, "terminated");
        }
        break;
    }
    case W_TIMER: {
        uint64_t n;
        (void)!read(w->fd, &n, sizeof(n));
        m->timer_armed = 0; /* it fired: set it again whatever comes next */
        break;
    }
    case W_PROBE:
        if (w->fd >= 0)
            probe_reaped(m);
        break;
    case W_TUNNEL:
        if (w->fd >= 0)
            tunnel_accept(m, (struct tunnel *)w);
        break;
    case W_TCONN_CLIENT:
        tconn_event(m, (struct tconn *)((char *)w - offsetof(struct tconn, c)), false, events);
        break;
    case W_TCONN_SERVER:
        tconn_event(m, (struct tconn *)((char *)w - offsetof(struct tconn, s)), true, events);
        break;
    case W_STATUS: {
        struct proc *p = (struct proc *)((char *)w - offsetof(struct proc, status_w));
        if (w->fd >= 0)
            proc_reap(m, p);
        break;
    }
    case W_OUTPUT: {
        struct stream *s = (struct stream *)w;
        if (w->fd >= 0 && stream_read(m, s, false))
            proc_maybe_done(m, s->proc);
        break;
    }
    case W_STDIN: {
        struct proc *p = (struct proc *)((char *)w - offsetof(struct proc, stdin_w));
        if (w->fd < 0)
            break;
        if (events & EPOLLERR) {
            /* The reader has gone. */
            stdin_close(m, p);
            break;
        }
        stdin_flush(m, p);
        break;
    }
    }
}

static void loop(struct monitor *m)
{
    struct epoll_event evs[64];

    while (m->state != MON_DONE) {
        bool idle_work;
        int n, timeout = -1;

        arm_timer(m, run_deadlines(m));
        if (m->state == MON_DONE)
            break;
        /* procs/.next is made once the sandbox has been quiet a while (an
         * agent thinking between commands): never between the steps of a
         * busy client's requests, where each file would delay the next. */
        idle_work = next_wanted(m);
        if (idle_work) {
            int64_t quiet = now_ms() - m->last_busy;
            timeout = quiet >= NEXT_QUIET_MS ? 0 : (int)(NEXT_QUIET_MS - quiet);
        }
        if (m->flush_due) {
            m->flush_due = false;
            client_flush(m);
        }
        n = epoll_wait(m->ep, evs, 64, idle_work ? timeout : -1);
        if (n == 0 && idle_work) {
            if (now_ms() - m->last_busy >= NEXT_QUIET_MS)
                next_step(m);
            continue;
        }
        if (n > 0)
            m->last_busy = now_ms();
        if (n < 0) {
            if (errno == EINTR)
                continue;
            mlog("epoll_wait: %s", strerror(errno));
            /* Nothing can be watched any more: end the sandbox cleanly. */
            terminate_with(m, "terminated");
            sleep(1);
            continue;
        }
        for (int i = 0; i < n; i++)
            dispatch(m, evs[i].data.ptr, evs[i].events);
        client_free_dead(m);
        tconns_free_dead(m);
    }
}

/* ---- the spec ---- */

static void spec_free(struct spec *s)
{
    free(s->cidr_allowlist);
    free(s->probe_exec);
    free(s->layers);
    free(s->env);
    free(s->entrypoint);
    json_decref(s->root);
    memset(s, 0, sizeof(*s));
}

/* Reads spec.json with every field type-checked; *why says what is wrong. */
static int spec_load(const char *path, struct spec *s, char *why, size_t why_len)
{
    json_error_t jerr;
    json_t *v;
    bool ok;
    uint64_t u;

#define BAD(...)                                                                                   \
    do {                                                                                           \
        snprintf(why, why_len, __VA_ARGS__);                                                       \
        spec_free(s);                                                                              \
        return -EINVAL;                                                                            \
    } while (0)

    memset(s, 0, sizeof(*s));
    s->root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!s->root)
        BAD("spec %s: %s", path, jerr.text);
    if (!json_is_object(s->root))
        BAD("spec %s: not a JSON object", path);
    s->layers = strv_of(json_object_get(s->root, "image_layers"), true, false, &ok);
    if (!ok)
        BAD("spec: \"image_layers\" must be a non-empty array of paths");
    for (size_t i = 0; s->layers[i]; i++)
        if (s->layers[i][0] != '/')
            BAD("spec: layer `%s` is not an absolute path", s->layers[i]);
    v = json_object_get(s->root, "env");
    if (v && !json_is_null(v)) {
        s->env = strv_of(v, false, true, &ok);
        if (!ok)
            BAD("spec: \"env\" must be an array of \"K=V\" strings");
    }
    v = json_object_get(s->root, "entrypoint");
    if (v && !json_is_null(v)) {
        s->entrypoint = strv_of(v, true, false, &ok);
        if (!ok)
            BAD("spec: \"entrypoint\" must be null or a non-empty array of strings");
    }
    s->workdir = "/";
    v = json_object_get(s->root, "workdir");
    if (v && !json_is_null(v)) {
        s->workdir = json_string_value(v);
        if (!s->workdir || s->workdir[0] != '/')
            BAD("spec: \"workdir\" must be an absolute path");
    }
    v = json_object_get(s->root, "state_spare");
    if (v && !json_is_null(v) && !(s->state_spare = json_string_value(v)))
        BAD("spec: \"state_spare\" must be a string");
    v = json_object_get(s->root, "hostname");
    if (v && !json_is_null(v)) {
        s->hostname = json_string_value(v);
        if (!s->hostname || !*s->hostname || strlen(s->hostname) > 64)
            BAD("spec: \"hostname\" must be a string of 1 to 64 characters");
    }
    s->cgroup_parent = "sandboxd";
    v = json_object_get(s->root, "cgroup_parent");
    if (v && !json_is_null(v)) {
        s->cgroup_parent = json_string_value(v);
        if (!s->cgroup_parent || !*s->cgroup_parent || s->cgroup_parent[0] == '/' ||
            strstr(s->cgroup_parent, ".."))
            BAD("spec: \"cgroup_parent\" must be a relative cgroup path");
    }
    v = json_object_get(s->root, "network");
    if (v && !json_is_null(v)) {
        sbx_error err = {0};
        s->network.bridge = json_string_value(json_object_get(v, "bridge"));
        if (!json_is_object(v) || !s->network.bridge ||
            sbx_network_parse(json_string_value(json_object_get(v, "subnet")), &s->network, &err) <
                0)
            BAD("spec: \"network\" must be {\"bridge\":NAME,\"subnet\":\"A.B.C.D/P\"}");
        s->on_network = true;
    }
    v = json_object_get(s->root, "block_network");
    if (v && !json_is_null(v) && !json_is_boolean(v))
        BAD("spec: \"block_network\" must be a boolean");
    s->block_network = json_is_true(v);
    if (s->block_network && s->on_network)
        BAD("spec: \"block_network\" and \"network\" together");
    v = json_object_get(s->root, "cidr_allowlist");
    if (v && !json_is_null(v)) {
        s->cidr_allowlist = strv_of(v, false, false, &ok);
        if (!ok || !s->on_network)
            BAD("spec: \"cidr_allowlist\" must be an array of strings, with \"network\"");
        s->n_cidr_allowlist = json_array_size(v);
    }
    v = json_object_get(s->root, "readiness_probe");
    if (v && !json_is_null(v)) {
        json_t *tcp = json_object_get(v, "tcp"), *ex = json_object_get(v, "exec");
        uint64_t iv = 100;
        if (!json_is_object(v) || !tcp == !ex ||
            (tcp && (!json_is_integer(tcp) || json_integer_value(tcp) < 1 ||
                     json_integer_value(tcp) > 65535)) ||
            !get_uint(v, "interval_ms", 60000, &iv) || iv < 10)
            BAD("spec: \"readiness_probe\" must be {\"tcp\":PORT} or {\"exec\":[..]}, "
                "with interval_ms 10..60000");
        if (ex) {
            s->probe_exec = strv_of(ex, true, false, &ok);
            if (!ok)
                BAD("spec: \"readiness_probe\".exec must be a non-empty array of strings");
        }
        s->probe_tcp = tcp ? (int)json_integer_value(tcp) : 0;
        s->probe_interval_ms = (int64_t)iv;
    }
    v = json_object_get(s->root, "ports");
    if (v && !json_is_null(v)) {
        size_t i;
        json_t *p;
        if (!json_is_array(v) || json_array_size(v) > MAX_TUNNELS)
            BAD("spec: \"ports\" must be an array of at most %d ports", MAX_TUNNELS);
        json_array_foreach(v, i, p)
        {
            json_t *n = json_is_object(p) ? json_object_get(p, "port") : p;
            json_t *tls = json_object_get(p, "tls");
            if (!json_is_integer(n) || json_integer_value(n) < 1 || json_integer_value(n) > 65535 ||
                (tls && !json_is_boolean(tls)))
                BAD("spec: \"ports\": each a port 1..65535 or {\"port\":N,\"tls\":bool}");
            s->ports_tls[s->n_ports] = json_is_true(tls);
            s->ports[s->n_ports++] = (int)json_integer_value(n);
        }
    }
    v = json_object_get(s->root, "tls_cert");
    if (v && !json_is_null(v) && (!(s->tls_cert = json_string_value(v)) || s->tls_cert[0] != '/'))
        BAD("spec: \"tls_cert\" must be an absolute path");
    v = json_object_get(s->root, "tls_key");
    if (v && !json_is_null(v) && (!(s->tls_key = json_string_value(v)) || s->tls_key[0] != '/'))
        BAD("spec: \"tls_key\" must be an absolute path");
    for (size_t i = 0; i < s->n_ports; i++)
        if (s->ports_tls[i] && (!s->tls_cert || !s->tls_key))
            BAD("spec: a tls port needs \"tls_cert\" and \"tls_key\"");
    s->tunnel_bind = "127.0.0.1";
    v = json_object_get(s->root, "tunnel_bind");
    if (v && !json_is_null(v)) {
        struct in_addr a;
        if (!(s->tunnel_bind = json_string_value(v)) || inet_pton(AF_INET, s->tunnel_bind, &a) != 1)
            BAD("spec: \"tunnel_bind\" must be an IPv4 address");
    }
    v = json_object_get(s->root, "mounts");
    if (v && !json_is_null(v)) {
        size_t i;
        json_t *mo;
        if (!json_is_array(v) || json_array_size(v) > SBX_MAX_MOUNTS)
            BAD("spec: \"mounts\" must be an array of at most %d mounts", SBX_MAX_MOUNTS);
        json_array_foreach(v, i, mo)
        {
            struct sbx_mount *m = &s->mounts[s->n_mounts++];
            json_t *ro = json_object_get(mo, "readonly"), *rel = json_object_get(mo, "path");
            m->root = json_string_value(json_object_get(mo, "root"));
            m->dst = json_string_value(json_object_get(mo, "dst"));
            m->path = json_string_value(rel);
            if (!m->root || m->root[0] != '/' || !m->dst || m->dst[0] != '/' ||
                (rel && !json_is_null(rel) && !m->path) || (ro && !json_is_boolean(ro)))
                BAD("spec: each of \"mounts\" must be {\"root\":ABS,\"path\":REL,"
                    "\"dst\":ABS,\"readonly\":BOOL}");
            m->readonly = json_is_true(ro);
        }
    }
    v = json_object_get(s->root, "resolv_conf");
    if (v && !json_is_null(v) &&
        (!(s->resolv_conf = json_string_value(v)) || s->resolv_conf[0] != '/'))
        BAD("spec: \"resolv_conf\" must be an absolute path");
    v = json_object_get(s->root, "pooled");
    if (v && !json_is_null(v) && !json_is_boolean(v))
        BAD("spec: \"pooled\" must be a boolean");
    s->pooled = json_is_true(v);
    if (s->pooled && s->entrypoint)
        BAD("spec: a pooled sandbox has no entrypoint until it is claimed");
    v = json_object_get(s->root, "no_userns");
    if (v && !json_is_null(v) && !json_is_boolean(v))
        BAD("spec: \"no_userns\" must be a boolean");
    s->no_userns = json_is_true(v);
    u = 0;
    if (!get_uint(s->root, "disk_mib", 1ULL << 24, &u) || (u && u < 16))
        BAD("spec: \"disk_mib\" must be from 16 to %llu", 1ULL << 24);
    s->disk_mib = u;
    u = 0;
    if (!get_uint(s->root, "uid", UINT32_MAX - 1, &u))
        BAD("spec: \"uid\" must be a user id");
    s->uid = (uid_t)u;
    u = 0;
    if (!get_uint(s->root, "gid", UINT32_MAX - 1, &u))
        BAD("spec: \"gid\" must be a group id");
    s->gid = (gid_t)u;
    if (!get_uint(s->root, "memory_bytes", INT64_MAX, &s->limits.memory_bytes))
        BAD("spec: \"memory_bytes\" must be a whole number of bytes");
    u = 0;
    if (!get_uint(s->root, "pids_max", INT64_MAX, &u))
        BAD("spec: \"pids_max\" must be a whole number");
    s->limits.pids_max = (int64_t)u;
    if (!get_uint(s->root, "cpu_weight", 10000, &s->limits.cpu_weight))
        BAD("spec: \"cpu_weight\" must be 0..10000");
    if (!get_uint(s->root, "cpu_quota_us", INT64_MAX, &s->limits.cpu_quota_us))
        BAD("spec: \"cpu_quota_us\" must be a whole number");
    if (!get_uint(s->root, "cpu_period_us", INT64_MAX, &s->limits.cpu_period_us))
        BAD("spec: \"cpu_period_us\" must be a whole number");
    if (!get_uint(s->root, "timeout_s", 86400ULL * 365, &s->timeout_s))
        BAD("spec: \"timeout_s\" must be a whole number of seconds");
    if (!get_uint(s->root, "idle_timeout_s", 86400ULL * 365, &s->idle_timeout_s))
        BAD("spec: \"idle_timeout_s\" must be null or a whole number of seconds");
    s->output_limit = DEFAULT_OUTPUT_LIMIT;
    if (!get_uint(s->root, "output_limit", INT64_MAX, &s->output_limit) || s->output_limit < 4)
        BAD("spec: \"output_limit\" must be a number of bytes, at least 4");
    return 0;
#undef BAD
}

/* ---- start ---- */

static int mkdir_p(const char *path, mode_t mode)
{
    char buf[PATH_MAX];

    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return -ENAMETOOLONG;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* The status for the daemon: {"ok":true,"pid":N} or the error. */
static json_t *status_json(const char *code, const char *message, pid_t pid)
{
    return code ? json_pack("{s:b,s:{s:s,s:s}}", "ok", 0, "error", "code", code, "message", message)
                : json_pack("{s:b,s:i}", "ok", 1, "pid", (int)pid);
}

/* The same as one line of text (without its newline). */
static char *status_line(const char *code, const char *message, pid_t pid)
{
    json_t *j = status_json(code, message, pid);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;

    json_decref(j);
    return s;
}

static void report(int fd, const char *code, const char *message)
{
    _cleanup_free_ char *line = status_line(code, message, getpid());

    if (fd < 0)
        return;
    if (line) {
        (void)write_all(fd, line, strlen(line));
        (void)write_all(fd, "\n", 1);
    }
    close(fd);
}

/* A failed start is recorded like any finish: exit.json and an event. */
static void record_error(struct monitor *m, const char *message)
{
    _cleanup_json_ json_t *ex = NULL, *ev = NULL;
    double at = now_real();

    if (m->records_fd < 0)
        return;
    ev = json_pack("{s:s,s:f,s:s}", "event", "error", "at", at, "message", message);
    if (ev)
        append_event(m, ev);
    ex = json_pack("{s:n,s:s,s:f,s:s}", "returncode", "finish_reason", "error", "finished_at", at,
                   "error", message);
    if (ex)
        (void)write_json_at(m->records_fd, "exit.json", ex, true);
}

static int listen_socket(struct monitor *m, char *why, size_t why_len)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    mode_t old;
    int r;

    if (fd < 0) {
        snprintf(why, why_len, "socket: %s", strerror(errno));
        return -errno;
    }
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", m->sock_path);
    /* A socket nobody answers on is stale; one that answers is a monitor. */
    {
        _cleanup_close_ int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            snprintf(why, why_len, "a monitor is listening on %s already", m->sock_path);
            return -EADDRINUSE;
        }
    }
    unlink(m->sock_path);
    old = umask(0077);
    r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (r < 0 || chmod(m->sock_path, 0600) < 0 || listen(fd, 16) < 0) {
        r = -errno;
        snprintf(why, why_len, "listen on %s: %s", m->sock_path, strerror(errno));
        return r;
    }
    r = watch_add(m, &m->listen_w, fd, EPOLLIN);
    if (r < 0) {
        snprintf(why, why_len, "epoll: %s", strerror(-r));
        return r;
    }
    steal_fd(&fd);
    return 0;
}

static int sandbox_create(struct monitor *m, char *why, size_t why_len, const char **code)
{
    struct sbx_rlimit nofile = {.resource = RLIMIT_NOFILE, .soft = 1024, .hard = 1024};
    struct sbx_config cfg = {0};
    struct sbx_netns ns = {-1, -1, -1, 0};
    int pipes[3][2] = {{-1, -1}, {-1, -1}, {-1, -1}};
    struct proc *ep = NULL;
    sbx_error err = {0};
    int r, pool_fd;

    *code = "internal";
    cfg.id = m->id;
    cfg.run_dir = m->run_dir;
    cfg.state_dir = m->state_dir;
    cfg.layers = m->spec.layers;
    cfg.argv = m->spec.entrypoint;
    cfg.env = m->spec.env;
    cfg.workdir = m->spec.workdir;
    cfg.hostname = m->spec.hostname;
    cfg.uid = m->spec.uid;
    cfg.gid = m->spec.gid;
    cfg.no_userns = m->spec.no_userns;
    cfg.limits = m->spec.limits;
    cfg.cgroup_parent = m->spec.cgroup_parent;
    cfg.state_spare = m->spec.state_spare;
    cfg.resolv_conf = m->spec.resolv_conf;
    cfg.mounts = m->spec.mounts;
    cfg.disk_mib = m->spec.disk_mib;
    cfg.n_mounts = m->spec.n_mounts;
    cfg.stdio[0] = cfg.stdio[1] = cfg.stdio[2] = -1;
    /* The monitor raised its own fd limit; the sandbox keeps the usual one. */
    {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
            nofile.hard = rl.rlim_max;
            cfg.rlimits = &nofile;
            cfg.n_rlimits = 1;
        }
    }
    if (m->spec.entrypoint) {
        for (int i = 0; i < 3; i++)
            if (pipe2(pipes[i], O_CLOEXEC) < 0) {
                r = -errno;
                snprintf(why, why_len, "pipe: %s", strerror(errno));
                goto out;
            }
        cfg.stdio[0] = pipes[0][0];
        cfg.stdio[1] = pipes[1][1];
        cfg.stdio[2] = pipes[2][1];
    }
    /* A network namespace made ahead when the zygote's pool has one ready
     * (on the daemon's network when there is one: the pool's all are);
     * else one made here with its eth0, or, off the network, by the
     * sandbox itself (loopback only).  A sandbox that blocks the network
     * takes a loopback-only one (netpool_lo_fd).  The pools are of no more
     * use to us after this create: our copies of their sockets go. */
    pool_fd = m->spec.block_network ? m->netpool_lo_fd : m->netpool_fd;
    if (pool_fd >= 0) {
        int t = sbx_netpool_take(pool_fd, &ns, &err);
        if (t == 0)
            cfg.netns = &ns;
        else if (t != -EAGAIN)
            mlog("network namespace pool: %s", err.message);
    }
    if (!cfg.netns && m->spec.on_network) {
        r = sbx_netns_make(&m->spec.network, &ns, &err);
        if (r < 0) {
            *code = errno_code(-r);
            snprintf(why, why_len, "%s", err.message);
            goto out;
        }
        cfg.netns = &ns;
    }
    /* The allowlist is in the firewall before anything runs inside. */
    if (m->spec.cidr_allowlist && cfg.netns && cfg.netns->addr) {
        r = sbx_network_allow(&m->spec.network, cfg.netns->addr, m->spec.cidr_allowlist,
                              m->spec.n_cidr_allowlist, &err);
        if (r < 0) {
            sbx_netns_close(&ns);
            *code = errno_code(-r);
            snprintf(why, why_len, "%s", err.message);
            goto out;
        }
        m->allowed_addr = cfg.netns->addr;
    }
    r = sbx_sandbox_create(&cfg, &m->sb, &err);
    if (r < 0)
        allowlist_clear(m);
    sbx_netns_close(&ns);
    if (m->netpool_lo_fd >= 0 && m->netpool_lo_fd != m->netpool_fd)
        close(m->netpool_lo_fd);
    m->netpool_lo_fd = -1;
    if (m->netpool_fd >= 0) {
        close(m->netpool_fd);
        m->netpool_fd = -1;
    }
    for (int i = 0; i < 3; i++) {
        closep(&pipes[i][i ? 1 : 0]);
        pipes[i][i ? 1 : 0] = -1;
    }
    if (r < 0) {
        *code = errno_code(-r);
        snprintf(why, why_len, "%s", err.message);
        m->sb = NULL;
        goto out;
    }
    m->state = MON_RUNNING;
    m->last_activity = now_ms();
    if (m->spec.timeout_s)
        m->deadline = now_ms() + (int64_t)m->spec.timeout_s * 1000;

    /* The sandbox's fds are the runtime's: watch copies of them. */
    r = watch_dup(m, &m->pidfd_w, sbx_sandbox_pidfd(m->sb), EPOLLIN);
    if (r >= 0 && sbx_sandbox_exit_fd(m->sb) != sbx_sandbox_pidfd(m->sb))
        r = watch_dup(m, &m->exit_w, sbx_sandbox_exit_fd(m->sb), EPOLLIN);
    /* Edge-triggered: one look per OOM notification, never a busy loop. */
    if (r >= 0 && sbx_sandbox_oom_fd(m->sb) >= 0)
        r = watch_dup(m, &m->oom_w, sbx_sandbox_oom_fd(m->sb), EPOLLIN | EPOLLPRI | EPOLLET);
    if (r < 0) {
        snprintf(why, why_len, "watch the sandbox: %s", strerror(-r));
        goto fail_created;
    }
    if (m->spec.entrypoint) {
        json_t *argv = json_object_get(m->spec.root, "entrypoint");
        ep = proc_new(m, SBXD_ENTRYPOINT_ID, argv, false);
        r = ep ? entrypoint_adopt(m, ep, pipes) : -ENOMEM;
        if (r >= 0)
            r = proc_record_start(m, ep);
        if (r < 0) {
            snprintf(why, why_len, "record the entrypoint: %s", strerror(-r));
            goto fail_created;
        }
    }
    r = 0;
    goto out;

fail_created:
    watch_close(m, &m->pidfd_w);
    watch_close(m, &m->exit_w);
    watch_close(m, &m->oom_w);
    allowlist_clear(m);
    (void)sbx_sandbox_destroy(m->sb, NULL);
    m->sb = NULL;
    m->state = MON_FINISHING;
out:
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++)
            closep(&pipes[i][j]);
    return r;
}

/* Sends what is queued for the client, waiting for it (2 s at most): the
 * monitor is about to exit. */
static void client_flush_final(struct monitor *m)
{
    struct timeval tv = {.tv_sec = 2};
    int fl;

    if (!m->client)
        return;
    fl = fcntl(m->client->w.fd, F_GETFL);
    fcntl(m->client->w.fd, F_SETFL, fl & ~O_NONBLOCK);
    setsockopt(m->client->w.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    (void)write_all(m->client->w.fd, m->client->out.data + m->client->out.off,
                    buffer_pending(&m->client->out));
    client_drop(m, "the monitor is done");
}

/* Runs the monitor: detaches, creates the sandbox, serves until its end.
 * The status goes to ready_fd (the first process's pipe) or, when
 * client_fd is the daemon's open connection (taken), as the first line on
 * it: requests the daemon sent meanwhile wait in the socket and are served
 * once the sandbox exists. */
static int monitor_run(struct monitor *m, int ready_fd, const char *log_path, int client_fd)
{
    char why[1024];
    const char *code = "internal";
    sigset_t mask;
    int fd, r;

    /* Detach: our own session, stdio on /dev/null, stderr to the log. */
    setsid();
    fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        close(fd);
    }
    fd = log_path ? open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)
                  : open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        dup2(fd, 2);
        close(fd);
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    /* Room for every process's pipes and segments. */
    {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max > 65536 ? 65536 : rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    mlog("starting");

    {
        _cleanup_json_ json_t *mj =
            json_pack("{s:i,s:f}", "pid", (int)getpid(), "started_at", now_real());
        if (!mj || (r = write_json_at(m->records_fd, "monitor.json", mj, false)) < 0) {
            snprintf(why, sizeof(why), "write monitor.json: %s", strerror(mj ? -r : ENOMEM));
            goto fail;
        }
    }
    m->ep = epoll_create1(EPOLL_CLOEXEC);
    fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (m->ep < 0 || fd < 0 || watch_add(m, &m->timer_w, fd, EPOLLIN) < 0) {
        snprintf(why, sizeof(why), "epoll, timerfd: %s", strerror(errno));
        goto fail;
    }
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (fd < 0 || watch_add(m, &m->signal_w, fd, EPOLLIN) < 0) {
        snprintf(why, sizeof(why), "signalfd: %s", strerror(errno));
        goto fail;
    }
    if (listen_socket(m, why, sizeof(why)) < 0)
        goto fail;
    if (client_fd >= 0) {
        fcntl(client_fd, F_SETFL, fcntl(client_fd, F_GETFL) | O_NONBLOCK);
        r = client_adopt(m, steal_fd(&client_fd));
        if (r < 0) {
            snprintf(why, sizeof(why), "the daemon's connection: %s", strerror(-r));
            goto fail;
        }
    }

    if (!m->spec.pooled)
        append_simple_event(m, "scheduled");
    /* A pooled sandbox is made ahead, for nobody yet: behind everybody
     * else's work (its init, made at this priority, gets the normal one
     * back below, before anyone can claim it). */
    if (m->spec.pooled)
        (void)setpriority(PRIO_PROCESS, 0, BACKGROUND_NICE);
    r = sandbox_create(m, why, sizeof(why), &code);
    if (m->spec.pooled) {
        if (r >= 0)
            (void)setpriority(PRIO_PROCESS, (id_t)sbx_sandbox_pid(m->sb), 0);
        (void)setpriority(PRIO_PROCESS, 0, 0);
    }
    if (r < 0) {
        sbx_error err = {0};
        mlog("create: %s", why);
        /* Whatever a failed create left (it should leave nothing). */
        (void)sbx_sandbox_cleanup(m->run_dir, m->state_dir, m->spec.cgroup_parent, m->id, &err);
        goto fail;
    }
    if (!m->spec.pooled) {
        append_simple_event(m, "started");
        probe_start(m);
    }
    mlog("started the sandbox, pid %d%s", (int)sbx_sandbox_pid(m->sb),
         m->spec.pooled ? " (pooled: idle until claimed)" : "");
    report(ready_fd, NULL, NULL);
    /* The first line on the daemon's own connection (nothing was queued
     * before it: the loop has not run yet). */
    client_send(m, status_json(NULL, NULL, getpid()));
    /* Tunnels after it: their event must not come first. */
    if (!m->spec.pooled && tunnels_start(m, why, sizeof(why)) < 0) {
        /* Asked for and not there: the sandbox is not what was asked. */
        _cleanup_json_ json_t *ev =
            json_pack("{s:s,s:f,s:s}", "event", "error", "at", now_real(), "message", why);
        mlog("%s", why);
        if (ev)
            append_event(m, ev);
        terminate_with(m, "error");
    }

    loop(m);

    /* Tell the daemon, then go: the records stay. */
    client_flush_final(m);
    unlink(m->sock_path);
    mlog("done");
    return 0;

fail:
    mlog("cannot start: %s", why);
    record_error(m, why);
    if (m->listen_w.fd >= 0)
        unlink(m->sock_path);
    report(ready_fd, code, why);
    if (m->client) {
        client_send(m, status_json(code, why, 0));
        client_flush_final(m);
    }
    report(client_fd, code, why);
    return 1;
}

static void monitor_free(struct monitor *m)
{
    if (m->probe.active)
        probe_stop(m);
    if (m->ep >= 0)
        tunnels_stop(m);
    tconns_free_dead(m);
    closep(&m->own_netns_fd);
    for (size_t i = 0; i < m->n_procs; i++) {
        struct proc *p = m->procs[i];
        for (int s = 0; s < 2; s++) {
            watch_close(m, &p->out[s].w);
            if (p->out[s].seg_fd >= 0)
                close(p->out[s].seg_fd);
        }
        stdin_close(m, p);
        watch_close(m, &p->status_w);
        if (p->sp.pidfd >= 0)
            close(p->sp.pidfd);
        if (p->sp.status_pidfd >= 0)
            close(p->sp.status_pidfd);
        if (p->dir_fd >= 0)
            close(p->dir_fd);
        json_decref(p->argv);
        free(p);
    }
    free(m->procs);
    client_drop(m, "the monitor is done");
    client_free_dead(m);
    if (m->sb)
        sbx_sandbox_destroy(m->sb, NULL);
    watch_close(m, &m->listen_w);
    watch_close(m, &m->timer_w);
    watch_close(m, &m->signal_w);
    watch_close(m, &m->exit_w);
    watch_close(m, &m->pidfd_w);
    watch_close(m, &m->oom_w);
    if (m->ep >= 0)
        close(m->ep);
    if (m->records_fd >= 0)
        close(m->records_fd);
    if (m->procs_fd >= 0)
        close(m->procs_fd);
    if (m->procs_log_fd >= 0)
        close(m->procs_log_fd);
    spec_free(&m->spec);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: sandboxd-monitor --id SB --spec FILE --run-dir RUN --state-dir STATE "
               "[--log FILE] [--client-fd FD]\n"
               "       sandboxd-monitor --zygote FD [--netpool N] [--network BRIDGE,SUBNET "
               "--run-dir RUN]\n"
               "Creates sandbox SB and owns it; see daemon/monitor-proto.h.\n");
}

/* The first process's status: one line on the daemon's connection when
 * there is one, else on stdout; returns the exit status (0 started, 1 not). */
static int print_status(const struct monitor_args *a, const char *code, const char *message,
                        pid_t pid)
{
    _cleanup_free_ char *line = status_line(code, message, pid);

    if (a->client_fd >= 0) {
        if (line)
            (void)write_all(a->client_fd, line, strlen(line));
        (void)write_all(a->client_fd, "\n", 1);
        return code ? 1 : 0;
    }
    printf("%s\n", line ? line : "{\"ok\":false}");
    fflush(stdout);
    return code ? 1 : 0;
}

/* Closes every fd from 3 up but keep (-1: none): whatever our parent let us
 * inherit (a test harness's pipe, say) must not live as long as the
 * sandbox. */
static void close_inherited(int keep)
{
    if (keep < 3) {
        syscall(SYS_close_range, 3U, ~0U, 0U);
        return;
    }
    if (keep > 3)
        syscall(SYS_close_range, 3U, (unsigned)keep - 1, 0U);
    syscall(SYS_close_range, (unsigned)keep + 1, ~0U, 0U);
}

/* Everything between the command line (or a zygote request) and the
 * monitor's loop.  Started by the daemon directly, it forks: the monitor is
 * nobody's child but init's (or a subreaper's), in its own session.  Without
 * a client fd the first process waits for the monitor's report and prints
 * it (a double fork, so that it can); with one, the monitor reports on the
 * connection itself and the first process exits at once.  A monitor forked
 * by the zygote is detached already and runs here. */
static int monitor_main(const struct monitor_args *a)
{
    struct monitor m = {.records_fd = -1,
                        .procs_fd = -1,
                        .procs_log_fd = -1,
                        .ep = -1,
                        .netpool_fd = a->netpool_fd,
                        .netpool_lo_fd = a->netpool_lo_fd};
    char why[1024], path[PATH_MAX];
    int ready[2] = {-1, -1}, client_fd = a->client_fd, r;
    pid_t pid;

    m.id = a->id;
    m.run_dir = a->run_dir;
    m.state_dir = a->state_dir;
    m.listen_w = (struct watch){.kind = W_LISTEN, .fd = -1};
    m.timer_w = (struct watch){.kind = W_TIMER, .fd = -1};
    m.signal_w = (struct watch){.kind = W_SIGNAL, .fd = -1};
    m.exit_w = (struct watch){.kind = W_SANDBOX, .fd = -1};
    m.pidfd_w = (struct watch){.kind = W_SANDBOX, .fd = -1};
    m.oom_w = (struct watch){.kind = W_OOM, .fd = -1};
    m.sb_netns_fd = m.own_netns_fd = -1;
    m.state = MON_FINISHING; /* until the sandbox exists */
    if (!m.id || !a->spec || !m.run_dir || !m.state_dir)
        return print_status(a, "invalid_argument",
                            "--id, --spec, --run-dir and --state-dir are needed", 0);
    if (!valid_id(m.id))
        return print_status(a, "invalid_argument", "--id must match [A-Za-z0-9._-]{1,64}", 0);
    if (m.run_dir[0] != '/' || m.state_dir[0] != '/')
        return print_status(a, "invalid_argument", "--run-dir and --state-dir must be absolute", 0);
    log_id = m.id;
    if (spec_load(a->spec, &m.spec, why, sizeof(why)) < 0)
        return print_status(a, "invalid_argument", why, 0);
    m.seg_max = m.spec.output_limit / 4;
    /* The network's address leases and allowlist records are in our run dir. */
    m.spec.network.run_dir = m.run_dir;

    if (snprintf(m.sock_path, sizeof(m.sock_path), "%s/monitors/%s.sock", m.run_dir, m.id) >=
        (int)sizeof(m.sock_path)) {
        spec_free(&m.spec);
        return print_status(a, "invalid_argument", "the socket's path is too long", 0);
    }
    snprintf(m.records, sizeof(m.records), "%s/records/%s", m.state_dir, m.id);
    snprintf(path, sizeof(path), "%s/monitors", m.run_dir);
    if ((r = mkdir_p(path, 0700)) < 0 || (r = mkdir_p(m.records, 0700)) < 0) {
        snprintf(why, sizeof(why), "make %s: %s", r == 0 ? m.records : path, strerror(-r));
        spec_free(&m.spec);
        return print_status(a, "internal", why, 0);
    }
    m.records_fd = open(m.records, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    /* Held for our life: the daemon recycles a deleted sandbox's records
     * into a later one's only when no monitor holds it (spare.c).  Then the
     * directory must still be ours: one deleted before we got here is in
     * the trash, or already someone else's. */
    if (m.records_fd >= 0) {
        struct stat a_st, b_st;
        if (flock(m.records_fd, LOCK_SH) < 0 || fstat(m.records_fd, &a_st) < 0 ||
            stat(m.records, &b_st) < 0 || a_st.st_ino != b_st.st_ino ||
            a_st.st_dev != b_st.st_dev) {
            monitor_free(&m);
            return print_status(a, "not_found", "the sandbox's records are gone", 0);
        }
    }
    if (m.records_fd < 0 || (mkdirat(m.records_fd, "procs", 0700) < 0 && errno != EEXIST) ||
        (m.procs_fd = openat(m.records_fd, "procs", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
        (m.procs_log_fd = openat(m.records_fd, "procs.ndjson",
                                 O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) < 0) {
        snprintf(why, sizeof(why), "open %s/procs: %s", m.records, strerror(errno));
        monitor_free(&m);
        return print_status(a, "internal", why, 0);
    }
    if (faccessat(m.records_fd, "exit.json", F_OK, 0) == 0) {
        monitor_free(&m);
        return print_status(a, "failed_precondition", "the sandbox has finished already", 0);
    }
    next_adopt(&m);

    if (a->from_zygote) {
        r = monitor_run(&m, -1, a->log, client_fd);
        monitor_free(&m);
        return r;
    }
    if (client_fd < 0 && pipe2(ready, O_CLOEXEC) < 0) {
        monitor_free(&m);
        return print_status(a, "internal", "pipe", 0);
    }
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        monitor_free(&m);
        return print_status(a, "resource_exhausted", "fork", 0);
    }
    if (pid > 0 && client_fd >= 0) {
        /* The monitor reports on the connection itself. */
        monitor_free(&m);
        close(client_fd);
        return 0;
    }
    if (pid > 0) {
        char line[4096];
        size_t len = 0;
        ssize_t n;
        json_t *st;
        json_error_t jerr;

        close(ready[1]);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        while (len < sizeof(line) - 1 &&
               ((n = read(ready[0], line + len, sizeof(line) - 1 - len)) > 0 ||
                (n < 0 && errno == EINTR)))
            if (n > 0)
                len += (size_t)n;
        close(ready[0]);
        line[len] = '\0';
        monitor_free(&m);
        st = json_loads(line, JSON_DISABLE_EOF_CHECK, &jerr);
        if (!json_is_object(st)) {
            json_decref(st);
            return print_status(a, "internal", "the monitor died while starting", 0);
        }
        json_decref(st);
        /* Relay the monitor's own line as it is. */
        printf("%s", line);
        if (len == 0 || line[len - 1] != '\n')
            printf("\n");
        fflush(stdout);
        return strstr(line, "\"ok\":true") ? 0 : 1;
    }
    if (client_fd < 0) {
        close(ready[0]);
        pid = fork();
        if (pid != 0)
            _exit(pid < 0 ? 1 : 0);
    }

    /* The monitor itself.  It returns from main (stdout was flushed before
     * the forks), so the sanitizers' leak check runs here too. */
    r = monitor_run(&m, ready[1], a->log, client_fd);
    monitor_free(&m);
    return r;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"id", required_argument, NULL, 'i'},
        {"spec", required_argument, NULL, 's'},
        {"run-dir", required_argument, NULL, 'r'},
        {"state-dir", required_argument, NULL, 'S'},
        {"log", required_argument, NULL, 'l'},
        {"client-fd", required_argument, NULL, 'c'},
        {"zygote", required_argument, NULL, 'z'},
        {"netpool", required_argument, NULL, 'n'},
        {"network", required_argument, NULL, 'N'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct sbx_network net = {0};
    bool on_network = false;
    struct monitor_args a = {.client_fd = -1, .netpool_fd = -1, .netpool_lo_fd = -1};
    _cleanup_json_ json_t *hold = NULL;
    int c, zygote_fd = -1, r;
    unsigned netpool_size = 0;

    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'i':
            a.id = optarg;
            break;
        case 's':
            a.spec = optarg;
            break;
        case 'r':
            a.run_dir = optarg;
            break;
        case 'S':
            a.state_dir = optarg;
            break;
        case 'l':
            a.log = optarg;
            break;
        case 'c':
        case 'z': {
            char *end;
            long fd = strtol(optarg, &end, 10);
            if (end == optarg || *end || fd < 3 || fd > INT_MAX) {
                usage(stderr);
                close_inherited(-1);
                return print_status(&a, "invalid_argument", "an fd must be 3 or more", 0);
            }
            if (c == 'c')
                a.client_fd = (int)fd;
            else
                zygote_fd = (int)fd;
            break;
        }
        case 'n': {
            char *end;
            unsigned long n = strtoul(optarg, &end, 10);
            if (end == optarg || *end || n > SBX_NETPOOL_MAX) {
                usage(stderr);
                close_inherited(-1);
                return print_status(&a, "invalid_argument", "--netpool must be 0..1024", 0);
            }
            netpool_size = (unsigned)n;
            break;
        }
        case 'N': {
            /* BRIDGE,SUBNET: the zygote's pool makes eth0 on the bridge. */
            char *comma = strchr(optarg, ',');
            sbx_error err = {0};
            if (!comma || sbx_network_parse(comma + 1, &net, &err) < 0) {
                usage(stderr);
                close_inherited(-1);
                return print_status(&a, "invalid_argument", "--network BRIDGE,A.B.C.D/P", 0);
            }
            *comma = '\0';
            net.bridge = optarg;
            on_network = true;
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            close_inherited(a.client_fd);
            return print_status(&a, "invalid_argument", "bad arguments", 0);
        }
    }
    if (zygote_fd >= 0) {
        if (optind != argc || a.client_fd >= 0 || a.id) {
            usage(stderr);
            return 2;
        }
        close_inherited(zygote_fd);
        if (on_network && !a.run_dir) {
            usage(stderr);
            return 2;
        }
        net.run_dir = a.run_dir;
        r = zygote_serve(zygote_fd, argv, a.run_dir, netpool_size, on_network ? &net : NULL, &a,
                         &hold);
        if (r <= 0)
            return r < 0 ? 1 : 0;
        /* A fresh child with its request: on to the monitor. */
    } else {
        close_inherited(a.client_fd);
        if (optind != argc) {
            usage(stderr);
            return print_status(&a, "invalid_argument", "unexpected arguments", 0);
        }
    }
    r = monitor_main(&a);
#ifndef __SANITIZE_ADDRESS__
    /* Straight out: the libraries' destructors would only fault in pages
     * (a zygote's fork never ran them: ~10 us per page on a small VM) to
     * free what the kernel frees anyway.  Under ASan, exit() runs the leak
     * check. */
    fflush(NULL);
    _exit(r);
#endif
    return r;
}
