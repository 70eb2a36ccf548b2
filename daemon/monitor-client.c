/* monitor-client.c — the daemon's side of daemon/monitor-proto.h: starting a
 * sandbox's monitor, talking to it over its socket, and turning its events
 * into state changes and wake-ups.  All on the loop; nothing here blocks.
 *
 * A new monitor is connected from the start: the daemon makes a socket
 * pair, keeps one end and hands the other to the monitor (through the
 * zygote, or as fd 3 of a spawned program).  Requests go out at once and
 * wait in the socket while the monitor creates the sandbox; the first line
 * back is the monitor's status.  A monitor found again after a daemon
 * restart is connected to through its socket in RUN/monitors. */
#include "sandboxd.h"

#include "sbx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct pending {
    struct pending *next;
    long long seq;
    sbxd_monitor_cb cb;
    void *data;
    char *unsent; /* the request's line while the monitor is not yet connected */
    size_t unsent_len;
    char *resend; /* a copy of the line sent to a monitor still starting */
    size_t resend_len;
};

struct sbxd_monitor {
    struct sbxd *d;
    struct sbxd_sandbox *sb; /* NULL once the sandbox is forgotten */
    uv_pipe_t pipe;          /* the monitor's socket */
    bool connected, closing;
    bool starting; /* a new monitor: its status line is yet to come */
    /* Asked of the zygote; restarted as a program once (restart_pending
     * until the first connection's handle has closed). */
    bool via_zygote, respawned, restart_pending;
    char *inbuf;
    size_t inlen, incap;
    long long next_seq;
    struct pending *pending;
    /* start without the zygote: the monitor's first process */
    uv_process_t proc;
    unsigned connect_attempts;
    uv_timer_t retry;
    bool retry_active, pipe_open;
    uv_connect_t connect_req;
    /* Handles initialised and not yet closed: m is freed when the last one
     * closes after sbxd_monitor_close(). */
    int handles;
};

static void fail_pending(struct sbxd_monitor *m, const char *why)
{
    while (m->pending) {
        struct pending *p = m->pending;
        json_t *err =
            json_pack("{s:b,s:{s:s,s:s}}", "ok", 0, "error", "code", "unavailable", "message", why);
        m->pending = p->next;
        if (m->sb)
            p->cb(m->d, m->sb, err, p->data);
        json_decref(err);
        free(p->unsent);
        free(p->resend);
        free(p);
    }
}

/* The monitor has answered its first line: nothing is sent twice now. */
static void drop_resend_copies(struct sbxd_monitor *m)
{
    for (struct pending *p = m->pending; p; p = p->next) {
        free(p->resend);
        p->resend = NULL;
    }
}

static void restart_start(struct sbxd_monitor *m);
static bool monitor_began(struct sbxd_monitor *m);

static void handle_closed(uv_handle_t *h)
{
    struct sbxd_monitor *m = h->data;

    if (h == (uv_handle_t *)&m->pipe) {
        m->pipe_open = false;
        free(m->inbuf);
        m->inbuf = NULL;
        m->inlen = m->incap = 0;
        if (m->restart_pending && !m->closing) {
            m->restart_pending = false;
            m->handles--;
            restart_start(m);
            return;
        }
    }
    if (--m->handles == 0 && m->closing)
        free(m);
}

static void close_pipe(struct sbxd_monitor *m)
{
    if (m->pipe_open && !uv_is_closing((uv_handle_t *)&m->pipe))
        uv_close((uv_handle_t *)&m->pipe, handle_closed);
}

static void disconnect(struct sbxd_monitor *m, const char *why)
{
    if (m->connected) {
        m->connected = false;
        uv_read_stop((uv_stream_t *)&m->pipe);
    }
    fail_pending(m, why);
}

/* ---- events ---- */

static void handle_event(struct sbxd_monitor *m, json_t *msg)
{
    struct sbxd *d = m->d;
    struct sbxd_sandbox *sb = m->sb;
    const char *ev = json_string_value(json_object_get(msg, "ev"));
    const char *id = json_string_value(json_object_get(msg, "id"));
    struct sbxd_proc *p = id && sb ? sbxd_proc_find(sb, id) : NULL;

    if (!sb || !ev)
        return;
    if (!strcmp(ev, "output") && p) {
        const char *stream = json_string_value(json_object_get(msg, "stream"));
        json_int_t size = json_integer_value(json_object_get(msg, "size"));
        int s = stream && !strcmp(stream, "stderr") ? 1 : 0;
        if (size > 0 && (uint64_t)size > p->size[s])
            p->size[s] = (uint64_t)size;
        sbxd_wake_streams(d, sb, p);
    } else if (!strcmp(ev, "eof") && p) {
        const char *stream = json_string_value(json_object_get(msg, "stream"));
        p->eof[stream && !strcmp(stream, "stderr") ? 1 : 0] = true;
        sbxd_wake_streams(d, sb, p);
    } else if (!strcmp(ev, "exit") && p) {
        p->has_returncode = true;
        p->returncode = (int)json_integer_value(json_object_get(msg, "returncode"));
        sbxd_wake_proc(d, sb, p);
        sbxd_wake_streams(d, sb, p);
    } else if (!strcmp(ev, "event")) {
        const char *name = json_string_value(json_object_get(msg, "event"));
        if (name)
            sbxd_sandbox_set_state(d, sb, name);
    } else if (!strcmp(ev, "tunnels")) {
        json_t *t = json_object_get(msg, "tunnels");
        if (json_is_object(t)) {
            json_decref(sb->tunnels);
            sb->tunnels = json_incref(t);
            sbxd_wake_sandbox(d, sb);
        }
    } else if (!strcmp(ev, "finished")) {
        json_t *rc = json_object_get(msg, "returncode");
        sbxd_sandbox_finished(d, sb, json_is_integer(rc) ? (int)json_integer_value(rc) : -1,
                              json_string_value(json_object_get(msg, "finish_reason")));
    }
}

static void handle_line(struct sbxd_monitor *m, const char *line, size_t len)
{
    json_error_t jerr;
    json_t *msg = json_loadb(line, len, 0, &jerr), *seq;

    if (!json_is_object(msg)) {
        if (m->sb)
            sbxd_log(m->sb->id, "monitor sent an invalid message: %s", jerr.text);
        json_decref(msg);
        return;
    }
    seq = json_object_get(msg, "seq");
    if (json_is_integer(seq)) {
        struct pending **pp = &m->pending;
        while (*pp && (*pp)->seq != json_integer_value(seq))
            pp = &(*pp)->next;
        if (*pp) {
            struct pending *p = *pp;
            *pp = p->next;
            if (m->sb)
                p->cb(m->d, m->sb, msg, p->data);
            free(p->resend);
            free(p);
        }
    } else {
        handle_event(m, msg);
    }
    json_decref(msg);
}

static void monitor_lost(struct sbxd *d, struct sbxd_sandbox *sb, const char *why);
static void on_retry(uv_timer_t *t);
static void start_status(struct sbxd_monitor *m, const char *line, size_t len);

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct sbxd_monitor *m = h->data;

    if (m->incap - m->inlen < 65536) {
        size_t cap = m->incap ? m->incap * 2 : 131072;
        char *n = cap <= 2 * SBXD_MONITOR_MAX_MESSAGE + 131072 ? realloc(m->inbuf, cap) : NULL;
        if (!n) {
            *buf = uv_buf_init(NULL, 0);
            return;
        }
        m->inbuf = n;
        m->incap = cap;
    }
    (void)suggested;
    *buf = uv_buf_init(m->inbuf + m->inlen, (unsigned)(m->incap - m->inlen));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct sbxd_monitor *m = s->data;
    char *start, *nl;

    (void)buf;
    if (n < 0 && m->starting && m->via_zygote && !m->respawned && m->sb && !m->closing &&
        !monitor_began(m)) {
        /* The request went down with the zygote (killed, say, after it
         * took the request and before it forked): no monitor ever ran, so
         * nothing is half made.  Start one as a program instead, and send
         * it what the lost one was sent. */
        sbxd_log(m->sb->id,
                 "its monitor was lost on the way from the zygote: starting one directly");
        m->connected = false;
        uv_read_stop(s);
        m->restart_pending = true;
        close_pipe(m);
        return;
    }
    if (n < 0 && m->starting) {
        /* No status: the monitor died. */
        m->starting = false;
        disconnect(m, "the sandbox's monitor died while starting");
        close_pipe(m);
        if (!m->closing && m->sb)
            monitor_lost(m->d, m->sb, "it died while starting");
        return;
    }
    if (n < 0) {
        struct sbxd_sandbox *sb;
        disconnect(m, "the sandbox's monitor went away");
        close_pipe(m);
        /* A monitor ends once its sandbox has finished and everything is on
         * disk.  Otherwise reconnect: a monitor that dropped us (a protocol
         * error) answers again, a dead one refuses, and only then is the
         * sandbox lost.  (A pending request's callback may have forgotten
         * the sandbox meanwhile, a DELETE's: m->sb is read again, and is
         * NULL then.) */
        sb = m->closing ? NULL : m->sb;
        if (sb && !sbxd_sandbox_sync(m->d, sb) && !m->closing) {
            sbxd_log(sb->id, "monitor connection closed (%s): reconnecting", uv_strerror((int)n));
            m->retry_active = true;
            uv_timer_start(&m->retry, on_retry, 5, 0);
        }
        return;
    }
    m->inlen += (size_t)n;
    start = m->inbuf;
    while ((nl = memchr(start, '\n', m->inlen - (size_t)(start - m->inbuf)))) {
        if (m->starting && m->sb)
            start_status(m, start, (size_t)(nl - start));
        else
            handle_line(m, start, (size_t)(nl - start));
        start = nl + 1;
    }
    m->inlen -= (size_t)(start - m->inbuf);
    memmove(m->inbuf, start, m->inlen);
    if (m->inlen > SBXD_MONITOR_MAX_MESSAGE) {
        if (m->sb)
            sbxd_log(m->sb->id, "monitor message too long: disconnecting");
        disconnect(m, "protocol error");
        close_pipe(m);
    }
}

/* ---- connecting ---- */

static void try_connect(struct sbxd_monitor *m);
static void flush_unsent(struct sbxd_monitor *m);

static void on_retry(uv_timer_t *t)
{
    struct sbxd_monitor *m = t->data;

    m->retry_active = false;
    if (m->closing)
        return;
    if (m->pipe_open) {
        /* The last attempt's handle has not finished closing. */
        m->retry_active = true;
        uv_timer_start(&m->retry, on_retry, 5, 0);
        return;
    }
    try_connect(m);
}

/* The monitor is gone.  If it recorded the end, that is the end; if not, it
 * died with its sandbox unrecorded: whatever still runs is killed and the
 * runtime's leftovers removed. */
static void monitor_lost(struct sbxd *d, struct sbxd_sandbox *sb, const char *why)
{
    char sock[4096];
    sbx_error err;

    if (sbxd_sandbox_sync(d, sb))
        return;
    sbxd_log(sb->id, "monitor gone without a record of the end (%s): cleaning up", why);
    if (sbx_sandbox_cleanup(d->cfg.run_dir, d->cfg.state_dir, d->cfg.cgroup_parent, sb->id, &err) <
        0)
        sbxd_log(sb->id, "cleanup: %s", err.message);
    snprintf(sock, sizeof(sock), "%s/monitors/%s.sock", d->cfg.run_dir, sb->id);
    unlink(sock);
    sbxd_sandbox_finished(d, sb, -1, "error");
}

static void on_connect(uv_connect_t *req, int status)
{
    struct sbxd_monitor *m = req->data;

    if (m->closing) {
        close_pipe(m);
        return;
    }
    if (status < 0) {
        struct sbxd_sandbox *sb = m->sb;
        close_pipe(m);
        /* A full backlog is worth another try; a refused or missing socket
         * means the monitor is gone. */
        if (status == UV_EAGAIN && ++m->connect_attempts < 50) {
            m->retry_active = true;
            uv_timer_start(&m->retry, on_retry, 20, 0);
            return;
        }
        if (sb)
            monitor_lost(m->d, sb, uv_strerror(status));
        return;
    }
    m->connected = true;
    uv_read_start((uv_stream_t *)&m->pipe, on_alloc, on_read);
    flush_unsent(m);
    if (m->sb) {
        /* Catch up with what happened while nobody listened. */
        json_t *st = json_pack("{s:s}", "op", "status");
        sbxd_monitor_request(m->d, m->sb, st, NULL, NULL);
    }
}

static void try_connect(struct sbxd_monitor *m)
{
    char path[4096];

    snprintf(path, sizeof(path), "%s/monitors/%s.sock", m->d->cfg.run_dir, m->sb->id);
    uv_pipe_init(m->d->loop, &m->pipe, 0);
    m->pipe.data = m;
    m->pipe_open = true;
    m->handles++;
    m->connect_req.data = m;
    uv_pipe_connect(&m->connect_req, &m->pipe, path, on_connect);
}

static struct sbxd_monitor *monitor_new(struct sbxd *d, struct sbxd_sandbox *sb)
{
    struct sbxd_monitor *m = calloc(1, sizeof(*m));

    if (!m)
        return NULL;
    m->d = d;
    m->sb = sb;
    m->next_seq = 1;
    uv_timer_init(d->loop, &m->retry);
    m->retry.data = m;
    m->handles = 1;
    sb->mon = m;
    return m;
}

int sbxd_monitor_attach(struct sbxd *d, struct sbxd_sandbox *sb)
{
    char path[4096];
    struct sbxd_monitor *m;

    snprintf(path, sizeof(path), "%s/monitors/%s.sock", d->cfg.run_dir, sb->id);
    if (access(path, F_OK) < 0)
        return -errno;
    m = monitor_new(d, sb);
    if (!m)
        return -ENOMEM;
    try_connect(m);
    return 0;
}

/* ---- starting ---- */

/* The first line from a new monitor: the sandbox exists, or could not be
 * made (the monitor exits; exit.json says why if it got past the spec). */
static void start_status(struct sbxd_monitor *m, const char *line, size_t len)
{
    struct sbxd_sandbox *sb = m->sb;
    json_error_t jerr;
    json_t *st = json_loadb(line, len, 0, &jerr);

    m->starting = false;
    drop_resend_copies(m);
    if (json_is_true(json_object_get(st, "ok")) && sb->pooled) {
        /* Made ahead: ready to be claimed (pool.c). */
        sb->pool_ready = true;
    } else if (json_is_true(json_object_get(st, "ok"))) {
        sbxd_sandbox_set_state(m->d, sb, "scheduled");
        /* What the files say now (times, init's pid); asked after the
         * requests already sent (an exec), which go first. */
        sbxd_monitor_request(m->d, sb, json_pack("{s:s}", "op", "status"), NULL, NULL);
    } else {
        const char *msg =
            json_string_value(json_object_get(json_object_get(st, "error"), "message"));
        if (!msg)
            msg = json_is_object(st) ? "no message" : jerr.text;
        sbxd_log(sb->id, "monitor failed to start the sandbox: %s", msg);
        fail_pending(m, "the sandbox could not be created");
        sbxd_sandbox_finished(m->d, sb, -1, "error");
    }
    json_decref(st);
}

static void proc_exited(uv_process_t *p, int64_t status, int sig)
{
    (void)status;
    (void)sig;
    uv_close((uv_handle_t *)p, handle_closed);
}

/* Starts the monitor as a new program, with client_fd (not taken) as fd 3. */
static int spawn_monitor(struct sbxd_monitor *m, char *spec, char *log, int client_fd)
{
    struct sbxd *d = m->d;
    char *args[] = {(char *)d->cfg.monitor_path,
                    "--id",
                    m->sb->id,
                    "--spec",
                    spec,
                    "--run-dir",
                    (char *)d->cfg.run_dir,
                    "--state-dir",
                    (char *)d->cfg.state_dir,
                    "--log",
                    log,
                    "--client-fd",
                    "3",
                    NULL};
    uv_stdio_container_t stdio[4];
    uv_process_options_t opts = {0};
    int r;

    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_IGNORE;
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = 2;
    stdio[3].flags = UV_INHERIT_FD;
    stdio[3].data.fd = client_fd;
    opts.file = d->cfg.monitor_path;
    opts.args = args;
    opts.exit_cb = proc_exited;
    opts.stdio = stdio;
    opts.stdio_count = 4;
    m->proc.data = m;
    r = uv_spawn(d->loop, &m->proc, &opts);
    m->handles++;
    if (r < 0)
        uv_close((uv_handle_t *)&m->proc, handle_closed);
    return r;
}

/* Whether the monitor got as far as recording itself (monitor.json comes
 * before anything of the sandbox is made). */
static bool monitor_began(struct sbxd_monitor *m)
{
    char *path = sbxd_records_path(m->d, m->sb->id, "monitor.json");
    bool began = !path || access(path, F_OK) == 0;

    free(path);
    return began;
}

/* Opens a new connection and starts a monitor on its other end: forked by
 * the zygote when use_zygote and it answers, else spawned. */
static int start_connected(struct sbxd_monitor *m, bool use_zygote)
{
    struct sbxd *d = m->d;
    struct sbxd_sandbox *sb = m->sb;
    char *spec = sbxd_records_path(d, sb->id, "spec.json");
    char *log = sbxd_records_path(d, sb->id, "monitor.log");
    int sv[2] = {-1, -1}, r;

    if (!spec || !log) {
        r = -ENOMEM;
        goto out;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        r = -errno;
        goto out;
    }
    uv_pipe_init(d->loop, &m->pipe, 0);
    m->pipe.data = m;
    m->pipe_open = true;
    m->handles++;
    r = uv_pipe_open(&m->pipe, sv[0]);
    if (r < 0) {
        sbxd_log(sb->id, "monitor connection: %s", uv_strerror(r));
        goto out;
    }
    sv[0] = -1; /* the pipe's now */
    m->connected = true;
    m->starting = true;
    uv_read_start((uv_stream_t *)&m->pipe, on_alloc, on_read);
    r = use_zygote ? sbxd_zygote_request(d, sb, spec, log, sv[1]) : -ENOTCONN;
    m->via_zygote = r >= 0;
    if (r < 0) {
        r = spawn_monitor(m, spec, log, sv[1]);
        if (r < 0)
            sbxd_log(sb->id, "spawn %s: %s", d->cfg.monitor_path, uv_strerror(r));
    }
out:
    if (sv[0] >= 0)
        close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    free(spec);
    free(log);
    return r;
}

/* After the zygote lost a start: the requests sent then go again, in
 * order, to a spawned monitor, with those made since the loss (unsent,
 * never sent, so with no copy to resend). */
static void restart_start(struct sbxd_monitor *m)
{
    m->respawned = true;
    for (struct pending *p = m->pending; p; p = p->next) {
        if (!p->resend)
            continue;
        p->unsent = p->resend;
        p->unsent_len = p->resend_len;
        p->resend = NULL;
    }
    if (start_connected(m, false) < 0) {
        struct sbxd_sandbox *sb = m->sb;
        m->starting = false;
        disconnect(m, "the sandbox's monitor could not be started");
        close_pipe(m);
        monitor_lost(m->d, sb, "it could not be started");
        return;
    }
    flush_unsent(m);
}

int sbxd_monitor_start(struct sbxd *d, struct sbxd_sandbox *sb)
{
    struct sbxd_monitor *m = monitor_new(d, sb);
    int r;

    if (!m)
        return -ENOMEM;
    r = start_connected(m, !d->cfg.no_zygote);
    if (r < 0)
        sbxd_monitor_close(sb);
    return r;
}

/* ---- requests ---- */

static void write_done(uv_write_t *w, int status)
{
    (void)status;
    free(w->data);
    free(w);
}

/* Writes one line (taking ownership of text). */
static int send_line(struct sbxd_monitor *m, char *text, size_t len)
{
    uv_write_t *w = calloc(1, sizeof(*w));
    uv_buf_t buf = uv_buf_init(text, (unsigned)len);

    if (!w) {
        free(text);
        return -ENOMEM;
    }
    w->data = text;
    if (uv_write(w, (uv_stream_t *)&m->pipe, &buf, 1, write_done) < 0) {
        free(w);
        free(text);
        return -EPIPE;
    }
    return 0;
}

/* Requests made before the monitor was reachable go out, oldest first. */
static void flush_unsent(struct sbxd_monitor *m)
{
    struct pending *order[1024];
    size_t n = 0;

    for (struct pending *p = m->pending; p && n < 1024; p = p->next)
        if (p->unsent)
            order[n++] = p;
    while (n-- > 0) {
        struct pending *p = order[n];
        char *text = p->unsent;
        p->unsent = NULL;
        send_line(m, text, p->unsent_len);
    }
}

static void ignore_reply(struct sbxd *d, struct sbxd_sandbox *sb, json_t *reply, void *data)
{
    const char *id = sb->id;

    (void)data;
    if (!json_is_true(json_object_get(reply, "ok")))
        return;
    if (json_object_get(reply, "state")) {
        /* A status reply: everything before it is in the files. */
        if (json_is_integer(json_object_get(reply, "init_pid")))
            sb->init_pid = (int)json_integer_value(json_object_get(reply, "init_pid"));
        if (json_is_object(json_object_get(reply, "tunnels"))) {
            json_decref(sb->tunnels);
            sb->tunnels = json_incref(json_object_get(reply, "tunnels"));
        }
        sbxd_sandbox_sync(d, sb);
        sbxd_wake_sandbox(d, sb);
    }
    /* A status reply after (re)connecting: pick up finished processes. */
    {
        json_t *procs = json_object_get(reply, "processes"), *p;
        size_t i;
        json_array_foreach(procs, i, p)
        {
            const char *pid = json_string_value(json_object_get(p, "id"));
            struct sbxd_proc *proc = pid ? sbxd_proc_find(sb, pid) : NULL;
            if (!proc && pid)
                proc = sbxd_proc_add(sb, pid, json_object_get(p, "argv"));
            if (proc && json_is_integer(json_object_get(p, "returncode"))) {
                proc->has_returncode = true;
                proc->returncode = (int)json_integer_value(json_object_get(p, "returncode"));
                sbxd_wake_proc(d, sb, proc);
            }
        }
    }
    (void)id;
}

int sbxd_monitor_request(struct sbxd *d, struct sbxd_sandbox *sb, json_t *msg, sbxd_monitor_cb cb,
                         void *data)
{
    struct sbxd_monitor *m = sb->mon;
    struct pending *p;
    char *text;
    size_t len;

    (void)d;
    /* A monitor that is starting or reconnecting gets the request once it
     * answers; one that is gone gets none. */
    if (!m || m->closing ||
        (!m->connected && !m->retry_active && !m->pipe_open && !m->restart_pending)) {
        json_decref(msg);
        return -ENOTCONN;
    }
    p = calloc(1, sizeof(*p));
    json_object_set_new(msg, "seq", json_integer(m->next_seq));
    text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (!p || !text) {
        free(p);
        free(text);
        return -ENOMEM;
    }
    len = strlen(text);
    text[len] = '\n'; /* json_dumps' NUL becomes the line's end */
    p->seq = m->next_seq++;
    p->cb = cb ? cb : ignore_reply;
    p->data = data;
    p->next = m->pending;
    m->pending = p;
    if (!m->connected) {
        p->unsent = text;
        p->unsent_len = len + 1;
        return 0;
    }
    if (m->starting && m->via_zygote && !m->respawned) {
        /* Kept until the monitor answers, should the zygote lose it. */
        p->resend = malloc(len + 1);
        if (p->resend) {
            memcpy(p->resend, text, len + 1);
            p->resend_len = len + 1;
        }
    }
    if (send_line(m, text, len + 1) < 0) {
        m->pending = p->next;
        free(p->resend);
        free(p);
        return -EPIPE;
    }
    return 0;
}

void sbxd_monitor_close(struct sbxd_sandbox *sb)
{
    struct sbxd_monitor *m = sb->mon;

    if (!m)
        return;
    sb->mon = NULL;
    fail_pending(m, "sandbox forgotten");
    m->sb = NULL;
    m->closing = true;
    m->retry_active = false;
    uv_timer_stop(&m->retry);
    uv_close((uv_handle_t *)&m->retry, handle_closed);
    disconnect(m, "closing");
    close_pipe(m);
    /* A spawned monitor's first process closes by itself (it exits); m is
     * freed when the last handle has closed. */
}
