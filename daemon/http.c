/* http.c — the daemon's HTTP layer: libmicrohttpd (MHD) driven by libuv.
 *
 * Integration.  Each listener (the unix socket, and TCP when configured) is
 * its own MHD daemon in external-event-loop mode with MHD_USE_EPOLL and no
 * thread: MHD keeps its sockets in one epoll fd, which a uv_poll_t watches
 * for readability.  MHD_run() runs when that fd is readable, when the
 * uv_timer_t armed from MHD_get_timeout() fires, and from a uv_idle_t that
 * anything outside MHD's callbacks schedules after it resumed a connection
 * (a late reply, a stream write), so MHD never runs re-entrantly and a
 * resumed connection is served on the next loop iteration.
 *
 * Request lifetime.  A struct sbxd_req lives in MHD's *req_cls.  It is
 * created at the first access-handler call (headers complete), collects the
 * body, and is handed to the handler once.  When the handler returns without
 * a reply the connection is suspended until the reply; a stream suspends
 * whenever its queue is empty.  The rules for its owner (the handler, and
 * whatever it keeps the pointer in):
 *   1. The owner may use the request until it has replied (any sbxd_reply_*
 *      but a stream) or ended its stream; until the end of the loop callback
 *      that did so, too (calls like sbxd_req_on_abort(req, NULL, NULL) right
 *      after the reply are fine: nothing is freed synchronously).
 *   2. If the client goes away before that, the on_abort callback runs once;
 *      that is the owner's signal to drop its pointer.  Replies and stream
 *      writes made before it returns are no-ops.  After it returns the request
 *      (and its stream) may be freed.
 *   3. An owner that set no on_abort keeps the request until it replies: a
 *      request whose client left is kept (as a no-op target) until its owner
 *      replies or ends its stream, and freed on the next loop iteration.
 *   4. sbxd_http_stop() calls every pending on_abort and frees everything.
 * The struct is freed once MHD's completion callback has run, its owner has
 * released it (rule 1-3, or never got it) and its uv_poll_t is closed.
 *
 * MHD does not notice a client leaving while its connection is suspended,
 * so a suspended request watches its socket with a uv_poll_t for
 * UV_DISCONNECT (EPOLLRDHUP, EPOLLHUP, EPOLLERR): a client that closes (or
 * half-closes) its end during a long poll or an idle stream is aborted at
 * once.  Suspended connections are also exempt from MHD's idle timeout, so a
 * long poll or a quiet stream is never cut by it.
 *
 * Limits.  MHD's per-connection memory pool is sized from max_header: a
 * request line plus headers that do not fit get MHD's own error reply
 * (414 for a too-long request line, 431 for headers) and the connection is
 * closed; what fits but exceeds max_header gets 431 too_large from here.  A
 * body is refused with 413 from its Content-Length before any of it is read;
 * a chunked body is refused with 413 as soon as it crosses max_body, and the
 * connection is closed without reading the rest. */
#include "http.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define LOG_PREFIX "sandboxd: http: "

/* Idle clients (between requests, or not reading a reply) are dropped after
 * this; suspended requests (long polls, quiet streams) are exempt. */
#ifndef HTTP_IDLE_TIMEOUT_S
#define HTTP_IDLE_TIMEOUT_S 300 /* tests build with a shorter one */
#endif
#define LISTEN_BACKLOG 512
/* Handler-added reply headers are not client-controlled, but still capped. */
#define MAX_REPLY_HEADERS 32

#define DEFAULT_MAX_BODY        (16u << 20)
#define DEFAULT_MAX_HEADER      (64u << 10)
#define DEFAULT_MAX_CONNECTIONS 1024u
#define DEFAULT_MAX_PENDING     (4u << 20)
/* A stream whose producer ignored on_drain is dropped above this many times
 * max_pending_bytes queued. */
#define PENDING_HARD_FACTOR 4

/* ---- ownership through cleanup attributes ---- */

static inline void http_freep(void *p)
{
    free(*(void **)p);
}
static inline void http_closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}
static inline void http_freeaddrinfop(struct addrinfo **ai)
{
    if (*ai)
        freeaddrinfo(*ai);
}
#define _cleanup_free_     __attribute__((cleanup(http_freep)))
#define _cleanup_close_    __attribute__((cleanup(http_closep)))
#define _cleanup_addrinfo_ __attribute__((cleanup(http_freeaddrinfop)))

#define steal_fd(fdp)                                                                              \
    ({                                                                                             \
        int _fd = *(fdp);                                                                          \
        *(fdp) = -1;                                                                               \
        _fd;                                                                                       \
    })

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* ---- types ---- */

struct listener {
    struct sbxd_http *http;
    struct MHD_Daemon *mhd;
    uv_poll_t poll; /* on MHD's epoll fd */
    bool poll_open;
    bool tcp;
};

struct reply_header {
    char *name, *value;
};

struct sbxd_stream {
    char *buf; /* queued bytes are buf[start, end) */
    size_t start, end, cap;
    bool ended;  /* sbxd_stream_end() was called */
    bool failed; /* dropped: the producer overran the hard cap */
    void (*on_drain)(sbxd_stream *s, void *data);
    void *drain_data;
    size_t drain_mark; /* on_drain runs once the queue is at most this */
    /* Pull mode (sbxd_stream_pull()): once the queue is empty. */
    size_t (*pull)(void *buf, size_t max, void *data);
    void (*on_dry)(sbxd_stream *s, void *data);
    void *pull_data;
};

struct sbxd_req {
    struct sbxd_http *http;
    struct listener *listener;
    struct MHD_Connection *conn;  /* NULL once MHD completed the request */
    struct sbxd_req *prev, *next; /* http->reqs */
    struct sbxd_req *drain_next;  /* http->drain_due */

    char *method, *path;
    char *body; /* NUL-terminated for convenience; body_len excludes it */
    size_t body_len, body_cap;
    /* or, spooled: the body in a file */
    int spool_fd;
    char *spool_path;
    uint64_t spool_len;

    bool handed;       /* the handler got it: an owner exists */
    bool replied;      /* a reply (or a stream) was made */
    bool owner_done;   /* the owner released it (rules 1-3 above) */
    bool aborted;      /* the client left (or the stream was dropped) */
    bool completed;    /* MHD's completion callback ran */
    bool suspended;    /* by us, through MHD_suspend_connection() */
    bool in_access;    /* our access handler runs for it right now */
    bool drain_queued; /* on http->drain_due */
    bool is_stream;
    bool hup_init, hup_closing;

    struct MHD_Response *response; /* made, not yet queued */
    unsigned status;
    struct reply_header headers[MAX_REPLY_HEADERS];
    unsigned n_headers;

    void (*on_abort)(sbxd_req *req, void *data);
    void *abort_data;
    void *user;

    struct sbxd_stream stream;
    uv_poll_t hup; /* the client's socket while suspended */
};

struct sbxd_http {
    uv_loop_t *loop;
    sbxd_handler handler;
    void *data;
    size_t max_body, max_header, max_pending;
    unsigned max_connections;
    bool (*spooled)(const char *method, const char *path);
    char *spool_dir;
    uint64_t max_spool;
    char **tokens;
    size_t n_tokens;
    char *unix_path;
    dev_t unix_dev;
    ino_t unix_ino;

    struct listener unix_l, tcp_l;
    uv_timer_t timer;
    uv_idle_t idle;
    bool timer_open, idle_open;
    unsigned handles_closing; /* the struct is freed when this drops to 0 after stop */
    bool stopping;

    struct sbxd_req *reqs;      /* every live request */
    struct sbxd_req *drain_due; /* streams whose on_drain is to run */
    unsigned zombies;           /* completed requests waiting for their owner */
    struct sbxd_http_stats stats;
    unsigned long long closed; /* connections closed so far */
};

static void schedule_run(struct sbxd_http *http);
static void req_try_free(struct sbxd_req *req);

/* ---- logging ---- */

static void http_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void http_log(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    size_t n;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    n = strlen(buf);
    while (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    fprintf(stderr, LOG_PREFIX "%s\n", buf);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char buf[1024];
    size_t n;

    (void)cls;
    vsnprintf(buf, sizeof(buf), fmt, ap);
    n = strlen(buf);
    while (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    fprintf(stderr, LOG_PREFIX "%s\n", buf);
}

/* ---- the request's lifetime ---- */

static void hup_closed(uv_handle_t *h)
{
    struct sbxd_req *req = container_of(h, struct sbxd_req, hup);
    struct sbxd_http *http = req->http;

    req->hup_closing = false;
    req_try_free(req);
    /* After sbxd_http_stop() the last handle to close frees the struct. */
    if (--http->handles_closing == 0 && http->stopping)
        free(http);
}

static void req_free(struct sbxd_req *req)
{
    struct sbxd_http *http = req->http;

    if (req->prev)
        req->prev->next = req->next;
    else if (http->reqs == req)
        http->reqs = req->next;
    if (req->next)
        req->next->prev = req->prev;
    if (req->drain_queued) {
        struct sbxd_req **pp = &http->drain_due;
        while (*pp && *pp != req)
            pp = &(*pp)->drain_next;
        if (*pp)
            *pp = req->drain_next;
    }
    if (req->response)
        MHD_destroy_response(req->response);
    for (unsigned i = 0; i < req->n_headers; i++) {
        free(req->headers[i].name);
        free(req->headers[i].value);
    }
    free(req->stream.buf);
    free(req->body);
    if (req->spool_fd >= 0)
        close(req->spool_fd);
    if (req->spool_path) {
        (void)unlink(req->spool_path); /* (unless the handler moved it) */
        free(req->spool_path);
    }
    free(req->method);
    free(req->path);
    free(req);
}

/* Frees the request once nobody can reach it any more: MHD is done with it,
 * its owner released it (or never got it) and its poll handle is closed. */
static void req_try_free(struct sbxd_req *req)
{
    if (!req->completed || req->hup_closing)
        return;
    if (req->handed && !req->owner_done)
        return;
    req_free(req);
}

/* Tells the owner once that the client left; afterwards the owner has
 * dropped its pointer (rule 2). */
static void req_abort(struct sbxd_req *req)
{
    void (*cb)(sbxd_req *, void *) = req->on_abort;

    req->aborted = true;
    if (!req->handed || req->owner_done)
        return;
    if (!cb)
        return; /* rule 3: kept until the owner replies */
    req->on_abort = NULL;
    cb(req, req->abort_data);
    req->owner_done = true;
}

static void hup_stop(struct sbxd_req *req)
{
    if (req->hup_init)
        uv_poll_stop(&req->hup);
}

static void on_hup(uv_poll_t *p, int status, int events)
{
    struct sbxd_req *req = container_of(p, struct sbxd_req, hup);

    (void)status;
    (void)events;
    /* Only UV_DISCONNECT (or an error) was asked for: the peer shut down its
     * end.  Tell the owner now and let MHD close the connection. */
    uv_poll_stop(p);
    if (req->aborted)
        return;
    req_abort(req);
    if (req->suspended) {
        req->suspended = false;
        MHD_resume_connection(req->conn);
        schedule_run(req->http);
    }
}

/* Suspends the connection until a reply or stream data arrives, watching for
 * the client leaving meanwhile (MHD does not while it is suspended).  Only
 * from MHD's access handler or content reader. */
static void req_suspend(struct sbxd_req *req)
{
    struct sbxd_http *http = req->http;

    if (req->suspended)
        return;
    MHD_suspend_connection(req->conn);
    req->suspended = true;
    if (!req->hup_init) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!ci || uv_poll_init(http->loop, &req->hup, ci->connect_fd) < 0)
            return; /* the reply still comes; only an early abort is missed */
        req->hup_init = true;
    }
    uv_poll_start(&req->hup, UV_DISCONNECT, on_hup);
}

/* Lets MHD go on with a request after something outside its callbacks
 * changed it (a reply, stream data, an abort). */
static void req_wake(struct sbxd_req *req)
{
    if (req->in_access || !req->conn)
        return; /* the access handler picks it up when it returns */
    if (req->suspended) {
        hup_stop(req);
        req->suspended = false;
        MHD_resume_connection(req->conn);
    }
    schedule_run(req->http);
}

/* ---- driving MHD from the loop ---- */

static void on_timer(uv_timer_t *t);
static void run_listeners(struct sbxd_http *http, struct listener **ls);

static void rearm_and_run(struct sbxd_http *http)
{
    struct listener *ls[] = {&http->unix_l, &http->tcp_l};
    uint64_t min = UINT64_MAX;

    if (http->stopping)
        return;
    /* MHD sends one buffer per connection per run and then asks to be run
     * again at once (timeout 0); a few rounds here save as many trips
     * through the loop on a busy stream, while a bound keeps the other
     * handles of the loop served. */
    for (int pass = 0; pass < 8; pass++) {
        min = UINT64_MAX;
        run_listeners(http, ls);
        for (size_t i = 0; i < 2; i++) {
            MHD_UNSIGNED_LONG_LONG t;
            if (ls[i]->mhd && MHD_get_timeout(ls[i]->mhd, &t) == MHD_YES && t < min)
                min = t;
        }
        if (min > 0 || http->stopping)
            break;
    }
    if (http->stopping)
        return;
    if (min == UINT64_MAX)
        uv_timer_stop(&http->timer);
    else
        uv_timer_start(&http->timer, on_timer, min, 0);
}

static void run_listeners(struct sbxd_http *http, struct listener **ls)
{
    for (size_t i = 0; i < 2; i++) {
        if (!ls[i]->mhd)
            continue;
        /* At its connection limit MHD takes the listening socket out of its
         * epoll set and puts it back only at the start of a later MHD_run():
         * when connections closed, run again so that waiting clients are
         * accepted now rather than at the next unrelated wake-up. */
        for (int round = 0; round < 4; round++) {
            unsigned long long closed = http->closed;
            MHD_run(ls[i]->mhd);
            if (http->closed == closed)
                break;
        }
    }
}

static void on_timer(uv_timer_t *t)
{
    rearm_and_run(container_of(t, struct sbxd_http, timer));
}

static void on_epoll(uv_poll_t *p, int status, int events)
{
    struct listener *l = container_of(p, struct listener, poll);

    (void)status;
    (void)events;
    rearm_and_run(l->http);
}

/* Runs what was deferred to here so that user callbacks and MHD never nest:
 * drain notifications, frees of requests whose owner replied late, MHD. */
static void on_idle(uv_idle_t *idle)
{
    struct sbxd_http *http = container_of(idle, struct sbxd_http, idle);

    uv_idle_stop(idle);
    while (http->drain_due && !http->stopping) {
        struct sbxd_req *req = http->drain_due;
        void (*cb)(sbxd_stream *, void *) = req->stream.on_drain;

        http->drain_due = req->drain_next;
        req->drain_queued = false;
        if (!cb || req->aborted || req->stream.ended || req->stream.failed)
            continue;
        req->stream.on_drain = NULL; /* once; the producer asks again */
        cb(&req->stream, req->stream.drain_data);
    }
    if (http->zombies) {
        struct sbxd_req *req = http->reqs, *next;
        /* Those still closing their poll handle are freed by hup_closed(). */
        for (http->zombies = 0; req; req = next) {
            next = req->next;
            if (req->completed && req->owner_done && !req->hup_closing)
                req_free(req);
        }
    }
    rearm_and_run(http);
}

static void schedule_run(struct sbxd_http *http)
{
    if (!http->stopping)
        uv_idle_start(&http->idle, on_idle);
}

/* ---- replies ---- */

/* Whether a reply may be made now; marks the owner as done when it may not
 * because the client left (rule 3: the late reply releases the request). */
static bool reply_allowed(struct sbxd_req *req)
{
    if (!req)
        return false;
    if (req->replied) {
        http_log("%s %s: second reply ignored", req->method, req->path);
        return false;
    }
    if (req->aborted || !req->conn) {
        req->replied = true;
        if (!req->owner_done) {
            req->owner_done = true;
            if (req->completed) {
                req->http->zombies++;
                schedule_run(req->http);
            }
        }
        return false;
    }
    return true;
}

static void count_status(struct sbxd_http *http, unsigned status)
{
    if (status >= 400 && status < 500)
        http->stats.responses_4xx++;
    else if (status >= 500)
        http->stats.responses_5xx++;
}

/* Hands a response to MHD: now when inside the access handler, else by
 * resuming the connection so that MHD calls the access handler again. */
static void reply_with(struct sbxd_req *req, unsigned status, struct MHD_Response *resp,
                       const char *content_type)
{
    if (!resp) {
        http_log("%s %s: out of memory for the reply", req->method, req->path);
        req->replied = req->owner_done = true;
        req->aborted = true; /* the access handler closes the connection */
        req_wake(req);
        return;
    }
    for (unsigned i = 0; i < req->n_headers; i++)
        MHD_add_response_header(resp, req->headers[i].name, req->headers[i].value);
    if (content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    req->response = resp;
    req->status = status;
    req->replied = true;
    if (!req->is_stream)
        req->owner_done = true;
    req_wake(req);
}

void sbxd_reply_bytes(sbxd_req *req, int status, const char *content_type, const void *data,
                      size_t len)
{
    if (!reply_allowed(req))
        return;
    reply_with(req, (unsigned)status,
               MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY),
               content_type);
}

void sbxd_reply_json(sbxd_req *req, int status, json_t *body)
{
    char *text;

    if (!reply_allowed(req)) {
        json_decref(body);
        return;
    }
    if (!body) {
        /* A failed json_pack() of the caller: still one reply. */
        sbxd_reply_error(req, 500, "internal", "could not build the reply");
        return;
    }
    text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!text) {
        sbxd_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    reply_with(req, (unsigned)status,
               MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE),
               "application/json");
}

void sbxd_reply_error(sbxd_req *req, int status, const char *code, const char *fmt, ...)
{
    char msg[1024];
    json_t *body;
    va_list ap;

    if (!reply_allowed(req))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    body = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
    if (!body) {
        static const char oom[] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        reply_with(
            req, 500,
            MHD_create_response_from_buffer(sizeof(oom) - 1, (void *)oom, MHD_RESPMEM_PERSISTENT),
            "application/json");
        return;
    }
    sbxd_reply_json(req, status, body);
}

void sbxd_reply_empty(sbxd_req *req, int status)
{
    if (!reply_allowed(req))
        return;
    reply_with(req, (unsigned)status,
               MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT), NULL);
}

void sbxd_reply_header(sbxd_req *req, const char *name, const char *value)
{
    char *n, *v;

    if (!req || req->replied || !name || !value)
        return;
    if (req->n_headers >= MAX_REPLY_HEADERS) {
        http_log("%s %s: header %s dropped: more than %d", req->method, req->path, name,
                 MAX_REPLY_HEADERS);
        return;
    }
    n = strdup(name);
    v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return;
    }
    req->headers[req->n_headers].name = n;
    req->headers[req->n_headers].value = v;
    req->n_headers++;
}

/* ---- streams ---- */

static void stream_queue_drain(struct sbxd_req *req)
{
    struct sbxd_http *http = req->http;

    if (req->drain_queued)
        return;
    req->drain_queued = true;
    req->drain_next = http->drain_due;
    http->drain_due = req;
    schedule_run(http);
}

/* MHD's content reader: copies what is queued; suspends the connection while
 * the queue is empty so MHD neither spins nor times it out. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct sbxd_req *req = cls;
    struct sbxd_stream *s = &req->stream;
    size_t n = s->end - s->start;

    (void)pos;
    if (req->aborted || s->failed)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (n == 0 && s->pull && !s->ended) {
        /* Straight into MHD's buffer: no copy of ours. */
        n = s->pull(buf, max, s->pull_data);
        if (n == SBXD_PULL_FAILED) {
            s->failed = true;
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (n > 0)
            return (ssize_t)(n < max ? n : max);
        /* Dry: the owner hears of it from the loop, not from in here. */
        s->on_drain = s->on_dry;
        s->drain_data = s->pull_data;
        stream_queue_drain(req);
    }
    if (n == 0) {
        if (s->ended)
            return MHD_CONTENT_READER_END_OF_STREAM;
        req_suspend(req);
        return 0;
    }
    if (n > max)
        n = max;
    memcpy(buf, s->buf + s->start, n);
    s->start += n;
    if (s->start == s->end)
        s->start = s->end = 0;
    if (s->on_drain && s->end - s->start <= s->drain_mark)
        stream_queue_drain(req);
    return (ssize_t)n;
}

sbxd_stream *sbxd_reply_stream(sbxd_req *req, int status, const char *content_type)
{
    if (!reply_allowed(req))
        return req ? &req->stream : NULL; /* writes to it are no-ops */
    req->is_stream = true;
    reply_with(
        req, (unsigned)status,
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, stream_read, req, NULL),
        content_type);
    return &req->stream;
}

static struct sbxd_req *stream_req(sbxd_stream *s)
{
    return container_of(s, struct sbxd_req, stream);
}

static bool stream_open(struct sbxd_req *req)
{
    return req->is_stream && !req->aborted && req->conn && !req->stream.ended &&
           !req->stream.failed;
}

size_t sbxd_stream_write(sbxd_stream *s, const void *data, size_t len)
{
    struct sbxd_req *req;
    struct sbxd_http *http;
    size_t pending;

    if (!s)
        return 0;
    req = stream_req(s);
    http = req->http;
    pending = s->end - s->start;
    if (!stream_open(req) || len == 0)
        return pending;
    if (pending + len > PENDING_HARD_FACTOR * http->max_pending) {
        /* The producer ignored on_drain: drop the client rather than grow. */
        http_log("%s %s: stream dropped: %zu bytes queued for a client that does not read",
                 req->method, req->path, pending + len);
        s->failed = true;
        req_wake(req);
        return pending;
    }
    if (s->cap - s->end < len && s->start > 0) {
        memmove(s->buf, s->buf + s->start, pending);
        s->start = 0;
        s->end = pending;
    }
    if (s->cap - s->end < len) {
        size_t cap = s->cap ? s->cap : 64 * 1024;
        char *nb;

        while (cap - s->end < len)
            cap *= 2;
        nb = realloc(s->buf, cap);
        if (!nb) {
            http_log("%s %s: stream dropped: out of memory", req->method, req->path);
            s->failed = true;
            req_wake(req);
            return pending;
        }
        s->buf = nb;
        s->cap = cap;
    }
    memcpy(s->buf + s->end, data, len);
    s->end += len;
    if (req->suspended)
        req_wake(req);
    return s->end - s->start;
}

void sbxd_stream_on_drain(sbxd_stream *s, void (*cb)(sbxd_stream *s, void *data), void *data)
{
    struct sbxd_req *req;
    size_t pending, mark;

    if (!s)
        return;
    req = stream_req(s);
    s->on_drain = cb;
    s->drain_data = data;
    if (!cb || !stream_open(req))
        return;
    pending = s->end - s->start;
    mark = pending < req->http->max_pending ? pending : req->http->max_pending;
    s->drain_mark = mark / 2;
    if (pending <= s->drain_mark)
        stream_queue_drain(req);
}

void sbxd_stream_pull(sbxd_stream *s, size_t (*pull)(void *buf, size_t max, void *data),
                      void (*on_dry)(sbxd_stream *s, void *data), void *data)
{
    if (!s)
        return;
    if (!pull && s->on_dry && s->on_drain == s->on_dry)
        s->on_drain = NULL; /* a dry notice still due */
    s->pull = pull;
    s->on_dry = on_dry;
    s->pull_data = data;
    sbxd_stream_kick(s);
}

void sbxd_stream_kick(sbxd_stream *s)
{
    struct sbxd_req *req;

    if (!s)
        return;
    req = stream_req(s);
    if (stream_open(req) && req->suspended)
        req_wake(req);
}

void sbxd_stream_end(sbxd_stream *s)
{
    struct sbxd_req *req;

    if (!s)
        return;
    req = stream_req(s);
    if (!req->is_stream || req->stream.ended)
        return;
    s->ended = true;
    s->on_drain = NULL;
    s->pull = NULL;
    s->on_dry = NULL;
    if (!req->owner_done) {
        req->owner_done = true;
        if (req->completed) {
            req->http->zombies++;
            schedule_run(req->http);
        }
    }
    if (req->conn && !req->aborted)
        req_wake(req);
}

/* ---- request accessors ---- */

const char *sbxd_req_method(const sbxd_req *req)
{
    return req->method;
}

const char *sbxd_req_path(const sbxd_req *req)
{
    return req->path;
}

const char *sbxd_req_query(const sbxd_req *req, const char *key)
{
    const char *value = NULL;

    if (!req->conn)
        return NULL;
    if (MHD_lookup_connection_value_n(req->conn, MHD_GET_ARGUMENT_KIND, key, strlen(key), &value,
                                      NULL) != MHD_YES)
        return NULL;
    return value ? value : ""; /* "?follow" without "=" */
}

struct query_each {
    void (*cb)(const char *key, const char *value, void *data);
    void *data;
};

static enum MHD_Result query_each_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    struct query_each *q = cls;

    (void)kind;
    q->cb(key, value ? value : "", q->data);
    return MHD_YES;
}

void sbxd_req_query_each(const sbxd_req *req,
                         void (*cb)(const char *key, const char *value, void *data), void *data)
{
    struct query_each q = {cb, data};

    if (req->conn)
        MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, query_each_cb, &q);
}

const char *sbxd_req_header(const sbxd_req *req, const char *name)
{
    if (!req->conn)
        return NULL;
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const void *sbxd_req_body(const sbxd_req *req, size_t *ret_len)
{
    if (ret_len)
        *ret_len = req->body_len;
    return req->body ? req->body : "";
}

const char *sbxd_req_body_file(const sbxd_req *req, uint64_t *ret_len)
{
    if (ret_len)
        *ret_len = req->spool_len;
    return req->spool_path;
}

json_t *sbxd_req_json(sbxd_req *req)
{
    json_error_t err;
    json_t *v;

    if (req->body_len == 0)
        return json_object();
    v = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &err);
    if (!v) {
        sbxd_reply_error(req, 400, "invalid_argument", "body: line %d column %d: %s", err.line,
                         err.column, err.text);
        return NULL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        sbxd_reply_error(req, 400, "invalid_argument", "body: expected a JSON object");
        return NULL;
    }
    return v;
}

void sbxd_req_on_abort(sbxd_req *req, void (*cb)(sbxd_req *req, void *data), void *data)
{
    if (!req)
        return;
    req->on_abort = cb;
    req->abort_data = data;
}

void sbxd_req_set_data(sbxd_req *req, void *data)
{
    req->user = data;
}

void *sbxd_req_get_data(const sbxd_req *req)
{
    return req->user;
}

void sbxd_http_get_stats(const sbxd_http *http, struct sbxd_http_stats *ret)
{
    *ret = http->stats;
}

/* ---- MHD callbacks ---- */

/* Compares in time that depends only on the lengths, not on where the
 * strings differ. */
static bool token_equal(const char *got, size_t got_len, const char *want)
{
    size_t want_len = strlen(want);
    volatile unsigned char diff = got_len != want_len;

    for (size_t i = 0; i < got_len; i++)
        diff |= (unsigned char)got[i] ^ (unsigned char)want[want_len ? i % want_len : 0];
    return diff == 0 && want_len > 0;
}

static bool authorized(struct sbxd_http *http, struct MHD_Connection *conn)
{
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    size_t len;
    bool ok = false;

    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    h += 7;
    while (*h == ' ')
        h++;
    len = strlen(h);
    while (len > 0 && (h[len - 1] == ' ' || h[len - 1] == '\t'))
        len--;
    if (len == 0)
        return false;
    /* Every token is compared, so the time does not say which one matched. */
    for (size_t i = 0; i < http->n_tokens; i++)
        ok |= token_equal(h, len, http->tokens[i]);
    return ok;
}

static enum MHD_Result add_size(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value)
{
    size_t *sum = cls;

    (void)kind;
    *sum += (key ? strlen(key) : 0) + (value ? strlen(value) : 0) + 4;
    return MHD_YES;
}

/* Queues what the request's reply made; the reply is sent after we return. */
static enum MHD_Result queue_reply(struct sbxd_req *req)
{
    struct MHD_Response *resp = req->response;
    enum MHD_Result r;

    req->response = NULL;
    r = MHD_queue_response(req->conn, req->status, resp);
    MHD_destroy_response(resp);
    if (r == MHD_YES)
        count_status(req->http, req->status);
    else
        http_log("%s %s: MHD refused the reply", req->method, req->path);
    return r;
}

static struct sbxd_req *req_new(struct listener *l, struct MHD_Connection *conn, const char *method,
                                const char *url)
{
    struct sbxd_http *http = l->http;
    struct sbxd_req *req = calloc(1, sizeof(*req));

    if (!req)
        return NULL;
    req->http = http;
    req->listener = l;
    req->conn = conn;
    req->spool_fd = -1;
    req->method = strdup(method);
    req->path = strdup(url);
    if (!req->method || !req->path) {
        free(req->method);
        free(req->path);
        free(req);
        return NULL;
    }
    req->next = http->reqs;
    if (http->reqs)
        http->reqs->prev = req;
    http->reqs = req;
    return req;
}

/* The first call, headers complete: what can be refused before the body. */
static void req_check_headers(struct sbxd_req *req, const char *method, const char *url)
{
    struct sbxd_http *http = req->http;
    struct MHD_Connection *conn = req->conn;
    const char *cl;
    size_t size = strlen(method) + strlen(url) + 12;

    if (http->stopping) {
        sbxd_reply_error(req, 503, "unavailable", "the daemon is stopping");
        return;
    }
    if (req->listener->tcp && !authorized(http, conn)) {
        sbxd_reply_header(req, "WWW-Authenticate", "Bearer");
        sbxd_reply_error(req, 401, "unauthenticated", "a valid bearer token is required");
        return;
    }
    MHD_get_connection_values(conn, MHD_HEADER_KIND | MHD_GET_ARGUMENT_KIND, add_size, &size);
    if (size > http->max_header) {
        sbxd_reply_error(req, 431, "too_large", "request headers above %zu bytes",
                         http->max_header);
        return;
    }
    if (http->spooled && http->spool_dir && http->spooled(method, req->path)) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/upload-XXXXXX", http->spool_dir);
        req->spool_fd = mkostemp(path, O_CLOEXEC);
        if (req->spool_fd < 0 || !(req->spool_path = strdup(path))) {
            sbxd_reply_error(req, 503, "unavailable", "cannot keep the upload: %s",
                             strerror(errno));
            return;
        }
    }
    cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end;
        unsigned long long n;

        errno = 0;
        n = strtoull(cl, &end, 10);
        if (req->spool_path) {
            if (errno || end == cl || n > http->max_spool)
                sbxd_reply_error(req, 413, "too_large", "request body above %llu bytes",
                                 (unsigned long long)http->max_spool);
            return;
        }
        if (errno || end == cl || n > http->max_body) {
            sbxd_reply_error(req, 413, "too_large", "request body above %zu bytes", http->max_body);
            return;
        }
        if (n > 0) {
            req->body = malloc((size_t)n + 1);
            if (!req->body) {
                sbxd_reply_error(req, 503, "unavailable", "out of memory for the body");
                return;
            }
            req->body_cap = (size_t)n + 1;
        }
    }
}

/* The body has crossed max_body in the middle of a chunked upload.  MHD
 * 0.9.75 accepts no reply while a body is being received, so the 413 is
 * written to the socket here and the connection is closed (MHD_NO) without
 * reading the rest. */
static enum MHD_Result refuse_body(struct sbxd_req *req)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    char msg[512];
    int blen, n;

    blen = snprintf(msg, sizeof(msg) / 2,
                    "{\"error\":{\"code\":\"too_large\",\"message\":\"request body above %llu "
                    "bytes\"}}",
                    req->spool_path ? (unsigned long long)req->http->max_spool
                                    : (unsigned long long)req->http->max_body);
    n = snprintf(msg + sizeof(msg) / 2, sizeof(msg) / 2,
                 "HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
                 "Content-Length: %d\r\nConnection: close\r\n\r\n",
                 blen);
    if (ci) {
        struct iovec iov[2] = {{msg + sizeof(msg) / 2, (size_t)n}, {msg, (size_t)blen}};
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
        /* Best effort: a tiny reply into an empty socket buffer. */
        if (sendmsg(ci->connect_fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
            http_log("%s %s: 413 not sent: %s", req->method, req->path, strerror(errno));
        shutdown(ci->connect_fd, SHUT_WR);
    }
    req->replied = req->owner_done = true;
    count_status(req->http, 413);
    return MHD_NO;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **req_cls)
{
    struct listener *l = cls;
    struct sbxd_http *http = l->http;
    struct sbxd_req *req = *req_cls;

    (void)version;
    if (!req) {
        req = req_new(l, conn, method, url);
        if (!req)
            return MHD_NO;
        *req_cls = req;
        http->stats.requests++;
        req->in_access = true;
        req_check_headers(req, method, url);
        req->in_access = false;
        if (req->response)
            return queue_reply(req); /* MHD then skips the body and closes */
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;

        *upload_data_size = 0;
        if (req->replied || req->aborted)
            return MHD_YES;
        if (req->spool_path) {
            /* Into the file (the page cache: no fsync on the loop). */
            if (n > http->max_spool - req->spool_len)
                return refuse_body(req);
            for (size_t off = 0; off < n;) {
                ssize_t w = write(req->spool_fd, upload_data + off, n - off);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0) {
                    http_log("%s %s: upload: %s", req->method, req->path, strerror(errno));
                    return MHD_NO;
                }
                off += (size_t)w;
            }
            req->spool_len += n;
            return MHD_YES;
        }
        if (n > http->max_body - req->body_len)
            return refuse_body(req);
        if (req->body_cap - req->body_len < n + 1) {
            size_t cap = req->body_cap ? req->body_cap : 4096;
            char *nb;

            while (cap - req->body_len < n + 1)
                cap *= 2;
            if (cap > http->max_body + 1)
                cap = http->max_body + 1;
            nb = realloc(req->body, cap);
            if (!nb)
                return MHD_NO;
            req->body = nb;
            req->body_cap = cap;
        }
        memcpy(req->body + req->body_len, upload_data, n);
        req->body_len += n;
        req->body[req->body_len] = '\0';
        return MHD_YES;
    }

    /* The whole request is here (or the connection was resumed). */
    if (req->aborted)
        return MHD_NO;
    if (req->response)
        return queue_reply(req);
    if (!req->handed && !req->replied) {
        req->handed = true;
        req->in_access = true;
        http->handler(req, http->data);
        req->in_access = false;
        if (req->aborted)
            return MHD_NO;
        if (req->response)
            return queue_reply(req);
    }
    req_suspend(req);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct sbxd_req *req = *req_cls;

    (void)cls;
    (void)conn;
    if (!req)
        return;
    *req_cls = NULL;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && !req->aborted)
        req_abort(req);
    req->aborted = true; /* no reply or write may reach MHD from now on */
    req->completed = true;
    req->suspended = false;
    req->conn = NULL;
    if (req->response) {
        MHD_destroy_response(req->response);
        req->response = NULL;
    }
    if (req->hup_init) {
        /* Before MHD closes the fd. */
        req->hup_init = false;
        req->hup_closing = true;
        req->http->handles_closing++;
        uv_close((uv_handle_t *)&req->hup, hup_closed);
    }
    req_try_free(req);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct listener *l = cls;

    (void)socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        l->http->stats.connections++;
        if (l->tcp) {
            /* Stream chunks go out as written, not after Nagle's delay. */
            const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
            int one = 1;
            if (ci)
                (void)setsockopt(ci->connect_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        l->http->closed++;
        if (l->http->stats.connections > 0)
            l->http->stats.connections--;
    }
}

/* ---- listeners ---- */

/* Binds the unix socket, replacing a socket file that nothing answers on
 * (left by a crash) but never a live daemon's socket or another file. */
static int listen_unix(struct sbxd_http *http, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    _cleanup_close_ int fd = -1;
    struct stat st;

    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (lstat(path, &st) == 0) {
        _cleanup_close_ int probe = -1;

        if (!S_ISSOCK(st.st_mode))
            return -EEXIST;
        probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe < 0)
            return -errno;
        if (connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            return -EADDRINUSE;
        if (errno != ECONNREFUSED)
            return -errno;
        if (unlink(path) < 0 && errno != ENOENT)
            return -errno;
    } else if (errno != ENOENT) {
        return -errno;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return -errno;
    /* Nobody can connect before listen(), so the umask's mode in between
     * does not matter. */
    if (chmod(path, 0660) < 0 || lstat(path, &st) < 0) {
        int r = -errno;
        unlink(path);
        return r;
    }
    if (listen(fd, LISTEN_BACKLOG) < 0) {
        int r = -errno;
        unlink(path);
        return r;
    }
    http->unix_dev = st.st_dev;
    http->unix_ino = st.st_ino;
    return steal_fd(&fd);
}

/* "HOST:PORT", "[IPv6]:PORT" or ":PORT" (all addresses). */
static int listen_tcp(const char *spec)
{
    _cleanup_addrinfo_ struct addrinfo *ai = NULL;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    _cleanup_close_ int fd = -1;
    char host[256];
    const char *port;
    int one = 1;

    if (spec[0] == '[') {
        const char *close_br = strchr(spec, ']');
        if (!close_br || close_br[1] != ':' || (size_t)(close_br - spec - 1) >= sizeof(host))
            return -EINVAL;
        memcpy(host, spec + 1, (size_t)(close_br - spec - 1));
        host[close_br - spec - 1] = '\0';
        port = close_br + 2;
        hints.ai_family = AF_INET6;
    } else {
        const char *colon = strrchr(spec, ':');
        if (!colon || strchr(spec, ':') != colon || (size_t)(colon - spec) >= sizeof(host))
            return -EINVAL;
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
        port = colon + 1;
    }
    if (!*port || strspn(port, "0123456789") != strlen(port))
        return -EINVAL;
    if (getaddrinfo(*host ? host : NULL, port, &hints, &ai) != 0 || !ai)
        return -EADDRNOTAVAIL;
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0)
        return -errno;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ai->ai_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, LISTEN_BACKLOG) < 0)
        return -errno;
    return steal_fd(&fd);
}

static int listener_start(struct sbxd_http *http, struct listener *l, int *fdp, bool tcp)
{
    const union MHD_DaemonInfo *di;
    /* MHD's pool holds the request line and headers, then the write buffer
     * of the reply: room for max_header plus MHD's own bookkeeping.  Not
     * more: MHD zeroes the whole pool after each request of a kept-alive
     * connection (with 512 KiB more for bigger stream chunks, memset was
     * 12% of the daemon's CPU under back-to-back execs, for no stream
     * throughput that could be told from noise). */
    size_t pool = http->max_header + http->max_header / 2 + 32 * 1024;
    int r;

    l->http = http;
    l->tcp = tcp;
    l->mhd = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_access, l,
        /* First, or MHD logs about it with its own logger. */
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET, *fdp,
        MHD_OPTION_CONNECTION_LIMIT, http->max_connections, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        pool, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_IDLE_TIMEOUT_S,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, l, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
        l, MHD_OPTION_END);
    if (!l->mhd)
        return -EIO; /* the listen fd stays ours: *fdp is closed by the caller */
    *fdp = -1;       /* MHD closes it in MHD_stop_daemon() */
    di = MHD_get_daemon_info(l->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (!di)
        return -EIO;
    r = uv_poll_init(http->loop, &l->poll, di->epoll_fd);
    if (r < 0)
        return r;
    l->poll_open = true;
    return uv_poll_start(&l->poll, UV_READABLE, on_epoll);
}

/* ---- start and stop ---- */

static void handle_closed(uv_handle_t *h)
{
    struct sbxd_http *http = h->data;

    if (--http->handles_closing == 0)
        free(http);
}

static void http_close_handle(struct sbxd_http *http, uv_handle_t *h)
{
    h->data = http;
    http->handles_closing++;
    uv_close(h, handle_closed);
}

static void http_free_config(struct sbxd_http *http)
{
    for (size_t i = 0; i < http->n_tokens; i++)
        free(http->tokens[i]);
    free(http->tokens);
    free(http->unix_path);
    free(http->spool_dir);
}

void sbxd_http_stop(sbxd_http *http)
{
    struct listener *ls[] = {&http->unix_l, &http->tcp_l};
    struct stat st;

    if (!http || http->stopping)
        return;
    http->stopping = true;
    /* Owners first: every pending request is aborted and released. */
    for (struct sbxd_req *req = http->reqs; req; req = req->next)
        if (!req->aborted)
            req_abort(req);
    /* MHD must not stop with suspended connections. */
    for (struct sbxd_req *req = http->reqs; req; req = req->next) {
        hup_stop(req);
        if (req->suspended) {
            req->suspended = false;
            MHD_resume_connection(req->conn);
        }
    }
    for (size_t i = 0; i < 2; i++) {
        /* The poll goes before MHD closes the epoll fd it watches. */
        if (ls[i]->poll_open)
            http_close_handle(http, (uv_handle_t *)&ls[i]->poll);
        ls[i]->poll_open = false;
        if (ls[i]->mhd)
            MHD_stop_daemon(ls[i]->mhd); /* completes (and frees) every request */
        ls[i]->mhd = NULL;
    }
    /* What is left waited for an owner that will now never reply. */
    while (http->reqs) {
        struct sbxd_req *req = http->reqs;
        req->owner_done = true;
        req->completed = true;
        if (req->hup_closing) {
            /* hup_closed() frees it; keep it off the list meanwhile. */
            http->reqs = req->next;
            if (req->next)
                req->next->prev = NULL;
            req->prev = req->next = NULL;
            continue;
        }
        req_free(req);
    }
    if (http->unix_path && lstat(http->unix_path, &st) == 0 && st.st_dev == http->unix_dev &&
        st.st_ino == http->unix_ino)
        unlink(http->unix_path);
    http_free_config(http);
    http->unix_path = NULL;
    http->tokens = NULL;
    http->n_tokens = 0;
    /* Freed in the last close callback; the extra count covers the calls. */
    http->handles_closing++;
    if (http->timer_open)
        http_close_handle(http, (uv_handle_t *)&http->timer);
    if (http->idle_open)
        http_close_handle(http, (uv_handle_t *)&http->idle);
    if (--http->handles_closing == 0)
        free(http);
}

int sbxd_http_start(uv_loop_t *loop, const struct sbxd_http_config *cfg, sbxd_handler handler,
                    void *data, sbxd_http **ret)
{
    struct sbxd_http *http;
    _cleanup_close_ int ufd = -1;
    _cleanup_close_ int tfd = -1;
    size_t n = 0;
    int r;

    if (!loop || !cfg || !cfg->unix_path || !handler || !ret)
        return -EINVAL;
    if (cfg->tcp_listen) {
        while (cfg->tokens && cfg->tokens[n])
            n++;
        /* TCP is served to anyone who can reach the port: never unguarded. */
        size_t usable = 0;
        for (size_t i = 0; i < n; i++)
            usable += cfg->tokens[i][0] != '\0';
        if (usable == 0)
            return -EPERM;
    }
    http = calloc(1, sizeof(*http));
    if (!http)
        return -ENOMEM;
    http->loop = loop;
    http->handler = handler;
    http->data = data;
    http->max_body = cfg->max_body ? cfg->max_body : DEFAULT_MAX_BODY;
    http->spooled = cfg->spooled;
    http->max_spool = cfg->max_spool ? cfg->max_spool : (8ULL << 30);
    http->spool_dir = cfg->spool_dir ? strdup(cfg->spool_dir) : NULL;
    http->max_header = cfg->max_header ? cfg->max_header : DEFAULT_MAX_HEADER;
    http->max_connections = cfg->max_connections ? cfg->max_connections : DEFAULT_MAX_CONNECTIONS;
    http->max_pending = cfg->max_pending_bytes ? cfg->max_pending_bytes : DEFAULT_MAX_PENDING;
    http->unix_path = strdup(cfg->unix_path);
    if (!http->unix_path) {
        r = -ENOMEM;
        goto fail;
    }
    if (n) {
        http->tokens = calloc(n, sizeof(char *));
        if (!http->tokens) {
            r = -ENOMEM;
            goto fail;
        }
        for (size_t i = 0; i < n; i++) {
            if (!cfg->tokens[i][0])
                continue;
            http->tokens[http->n_tokens] = strdup(cfg->tokens[i]);
            if (!http->tokens[http->n_tokens]) {
                r = -ENOMEM;
                goto fail;
            }
            http->n_tokens++;
        }
    }
    uv_timer_init(loop, &http->timer);
    http->timer_open = true;
    uv_idle_init(loop, &http->idle);
    http->idle_open = true;

    if (cfg->tcp_listen) {
        tfd = listen_tcp(cfg->tcp_listen);
        if (tfd < 0) {
            r = tfd;
            goto fail;
        }
    }
    ufd = listen_unix(http, http->unix_path);
    if (ufd < 0) {
        r = ufd;
        goto fail;
    }
    r = listener_start(http, &http->unix_l, &ufd, false);
    if (r < 0)
        goto fail;
    if (cfg->tcp_listen) {
        r = listener_start(http, &http->tcp_l, &tfd, true);
        if (r < 0)
            goto fail;
    }
    schedule_run(http);
    *ret = http;
    return 0;

fail:
    sbxd_http_stop(http);
    return r;
}
