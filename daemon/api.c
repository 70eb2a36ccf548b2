/* api.c — the REST API of ../shared/API.md: routing, validation, and the
 * waiters behind long polls and streams.  Handlers run on the loop; they
 * never block (the monitor does the sandbox's work, files are page-cache
 * reads of recent output). */
#include "sandboxd.h"

#include "image.h"
#include "sbx.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- small helpers ---- */

static void reply_sandbox_error(sbxd_req *req, json_t *reply)
{
    json_t *e = json_object_get(reply, "error");
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    int status = 500;

    if (!code)
        code = "internal";
    if (!strcmp(code, "invalid_argument"))
        status = 400;
    else if (!strcmp(code, "not_found"))
        status = 404;
    else if (!strcmp(code, "failed_precondition") || !strcmp(code, "already_exists"))
        status = 409;
    else if (!strcmp(code, "resource_exhausted"))
        status = 429;
    else if (!strcmp(code, "unavailable"))
        status = 503;
    sbxd_reply_error(req, status, code, "%s", msg ? msg : code);
}

static bool parse_timeout(sbxd_req *req, const char *q, double dflt, double max, double *ret)
{
    char *end;
    double v;

    if (!q) {
        *ret = dflt;
        return true;
    }
    v = strtod(q, &end);
    if (end == q || *end || !isfinite(v) || v < 0 || v > max) {
        sbxd_reply_error(req, 400, "invalid_argument", "timeout_s must be a number from 0 to %g",
                         max);
        return false;
    }
    *ret = v;
    return true;
}

/* A boolean query flag: ?follow=1 or ?follow=true. */
static bool query_flag(sbxd_req *req, const char *name)
{
    const char *v = sbxd_req_query(req, name);

    return v && (!strcmp(v, "1") || !strcmp(v, "true"));
}

/* Splits the path into at most 8 segments ("/v1/sandboxes/x" → v1 sandboxes x). */
static size_t split_path(const char *path, char segs[8][128])
{
    size_t n = 0;

    while (*path == '/')
        path++;
    while (*path && n < 8) {
        size_t len = strcspn(path, "/");
        if (len >= 128)
            return 9; /* nothing of ours has such a segment */
        memcpy(segs[n], path, len);
        segs[n][len] = '\0';
        n++;
        path += len;
        while (*path == '/')
            path++;
    }
    return *path ? 9 : n;
}

/* ---- waiters ---- */

static void waiter_unlink(struct sbxd_waiter *w)
{
    if (w->next) {
        w->next->prev = w->prev;
        w->prev->next = w->next;
        w->next = w->prev = NULL;
    }
}

static void timer_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Ends a waiter: unlinks it and frees it once its timer has closed. */
static void waiter_free(struct sbxd_waiter *w)
{
    waiter_unlink(w);
    if (w->req)
        sbxd_req_on_abort(w->req, NULL, NULL);
    w->req = NULL;
    w->stream = NULL;
    sbxd_output_cursor_close(&w->cursor);
    uv_timer_stop(&w->timer);
    w->timer.data = w;
    uv_close((uv_handle_t *)&w->timer, timer_closed);
}

static void waiter_aborted(sbxd_req *req, void *data)
{
    struct sbxd_waiter *w = data;

    (void)req;
    w->req = NULL;
    w->stream = NULL;
    waiter_free(w);
}

static struct sbxd_waiter *waiter_new(struct sbxd *d, struct sbxd_sandbox *sb, sbxd_req *req,
                                      int kind)
{
    struct sbxd_waiter *w = calloc(1, sizeof(*w));

    if (!w)
        return NULL;
    w->req = req;
    w->sb = sb;
    w->kind = kind;
    w->cursor.fd = -1;
    uv_timer_init(d->loop, &w->timer);
    w->timer.data = w;
    w->next = sb->waiters.next;
    w->prev = &sb->waiters;
    sb->waiters.next->prev = w;
    sb->waiters.next = w;
    sbxd_req_on_abort(req, waiter_aborted, w);
    return w;
}

static void wait_timeout(uv_timer_t *t)
{
    struct sbxd_waiter *w = t->data;
    struct sbxd *d = sbxd_global;

    if (w->kind == SBXD_WAIT_SANDBOX)
        sbxd_reply_json(w->req, 200, sbxd_sandbox_record(d, w->sb));
    else if (w->kind == SBXD_WAIT_READY)
        sbxd_reply_error(w->req, 504, "deadline_exceeded",
                         "sandbox `%s`: the readiness probe has not passed yet", w->sb->id);
    else if (w->kind == SBXD_WAIT_TUNNELS)
        sbxd_reply_error(w->req, 504, "deadline_exceeded", "sandbox `%s`: no tunnels yet",
                         w->sb->id);
    else if (w->kind == SBXD_WAIT_PROC)
        sbxd_reply_json(w->req, 200, json_pack("{s:n}", "returncode"));
    waiter_free(w);
}

static void events_pump(struct sbxd *d, struct sbxd_waiter *w);

/* Answers a request waiting on the sandbox (wait, ready, tunnels) if its
 * answer is known now; returns whether it did.  The handlers ask first,
 * and only then wait; a wake asks again. */
static bool sandbox_answer(struct sbxd *d, sbxd_req *req, struct sbxd_sandbox *sb, int kind)
{
    bool finished = !strcmp(sb->state, "finished");

    switch (kind) {
    case SBXD_WAIT_SANDBOX:
        if (!finished)
            return false;
        sbxd_reply_json(req, 200, sbxd_sandbox_record(d, sb));
        return true;
    case SBXD_WAIT_READY:
        if (!strcmp(sb->state, "ready"))
            sbxd_reply_json(req, 200, sbxd_sandbox_record(d, sb));
        else if (finished)
            sbxd_reply_error(req, 409, "failed_precondition",
                             "sandbox `%s` finished before its readiness probe passed", sb->id);
        else
            return false;
        return true;
    case SBXD_WAIT_TUNNELS:
        if (finished)
            sbxd_reply_error(req, 409, "failed_precondition",
                             "sandbox `%s` has finished: its tunnels are closed", sb->id);
        else if (sb->tunnels)
            sbxd_reply_json(req, 200, json_incref(sb->tunnels));
        else
            return false;
        return true;
    }
    return false;
}

void sbxd_wake_sandbox(struct sbxd *d, struct sbxd_sandbox *sb)
{
    struct sbxd_waiter *w = sb->waiters.next, *next;

    for (; w != &sb->waiters; w = next) {
        next = w->next;
        if (w->kind == SBXD_WAIT_EVENTS)
            events_pump(d, w);
        else if (sandbox_answer(d, w->req, sb, w->kind))
            waiter_free(w);
    }
}

void sbxd_wake_proc(struct sbxd *d, struct sbxd_sandbox *sb, struct sbxd_proc *p)
{
    struct sbxd_waiter *w = sb->waiters.next, *next;

    (void)d;
    for (; w != &sb->waiters; w = next) {
        next = w->next;
        if (w->kind == SBXD_WAIT_PROC && w->proc == p && p->has_returncode) {
            sbxd_reply_json(w->req, 200, json_pack("{s:i}", "returncode", p->returncode));
            waiter_free(w);
        }
    }
}

void sbxd_waiters_drop(struct sbxd_sandbox *sb)
{
    while (sb->waiters.next != &sb->waiters) {
        struct sbxd_waiter *w = sb->waiters.next;
        if (w->stream)
            sbxd_stream_end(w->stream);
        else if (w->req)
            sbxd_reply_error(w->req, 404, "not_found", "sandbox `%s` was deleted", sb->id);
        waiter_free(w);
    }
}

/* An output stream's source: the monitor's segment files, read straight
 * into the HTTP layer's send buffer. */
static size_t stream_pull(void *buf, size_t max, void *data)
{
    struct sbxd_waiter *w = data;
    ssize_t n = sbxd_output_pull(sbxd_global, w->sb->id, w->proc->id, w->stream_index, &w->cursor,
                                 &w->offset, buf, max);

    if (n < 0) {
        /* Never a silent gap: a follower that fell behind the output limit
         * is cut off, so that it resumes at its offset and is told
         * (X-Sandboxd-Dropped) how much it missed. */
        sbxd_log(w->sb->id, "process %s: %s: %s at byte %llu: closing the stream", w->proc->id,
                 w->stream_index ? "stderr" : "stdout",
                 n == -ERANGE ? "the reader fell behind the output limit" : strerror((int)-n),
                 (unsigned long long)w->offset);
        return SBXD_PULL_FAILED;
    }
    w->dry = n == 0;
    return (size_t)n;
}

/* Is the stream complete?  Only once a pull found nothing more: then,
 * without follow, at the current end; with follow, at EOF (the monitor
 * announces a stream's final size before its EOF), or at the end of a
 * finished sandbox's entrypoint (its streams may never see EOF). */
static bool stream_done(struct sbxd_waiter *w)
{
    struct sbxd_proc *p = w->proc;
    int i = w->stream_index;

    return w->dry && (!w->follow || (p->eof[i] && w->offset >= p->size[i]) ||
                      (p->has_returncode && w->offset >= p->size[i] &&
                       !strcmp(p->id, SBXD_ENTRYPOINT_ID) && !strcmp(w->sb->state, "finished")));
}

static void stream_finish(struct sbxd_waiter *w)
{
    sbxd_stream_end(w->stream);
    waiter_free(w);
}

/* The stream's pull found nothing: done, or it waits for the monitor's
 * next output event. */
static void stream_dry(sbxd_stream *s, void *data)
{
    struct sbxd_waiter *w = data;

    (void)s;
    if (stream_done(w))
        stream_finish(w);
}

/* Output came, or EOF: pull again (or end). */
static void stream_pump(struct sbxd *d, struct sbxd_waiter *w)
{
    (void)d;
    if (stream_done(w))
        stream_finish(w);
    else
        sbxd_stream_kick(w->stream);
}

void sbxd_wake_streams(struct sbxd *d, struct sbxd_sandbox *sb, struct sbxd_proc *p)
{
    struct sbxd_waiter *w = sb->waiters.next, *next;

    for (; w != &sb->waiters; w = next) {
        next = w->next;
        if (w->kind == SBXD_WAIT_STREAM && w->proc == p)
            stream_pump(d, w);
    }
}

/* ---- daemon endpoints ---- */

static void get_health(struct sbxd *d, sbxd_req *req)
{
    (void)d;
    sbxd_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void get_info(struct sbxd *d, sbxd_req *req)
{
    unsigned total = 0, ready, starting;
    unsigned long long claimed;
    json_t *info;

    for (struct sbxd_sandbox *sb = d->sandboxes; sb; sb = sb->next)
        total++;
    sbxd_pool_stats(d, &ready, &starting, &claimed);
    info = json_pack("{s:s,s:s,s:f,s:{s:I,s:i,s:i,s:i,s:I},s:{s:i,s:i,s:I,s:I}}", "version",
                     SBXD_VERSION, "cgroup_mode", sbx_cgroup_mode(), "started_at", d->started_at,
                     "limits", "max_body", (json_int_t)d->cfg.max_body, "max_connections",
                     (int)d->cfg.max_connections, "max_sandboxes", (int)d->cfg.max_sandboxes,
                     "max_execs", (int)d->cfg.max_execs, "output_limit",
                     (json_int_t)d->cfg.output_limit, "counts", "sandboxes_running",
                     (int)d->n_running, "sandboxes_known", (int)total, "sandboxes_created",
                     (json_int_t)d->created_total, "execs", (json_int_t)d->execs_total);
    /* The sandboxes made ahead: wanted per image, ready, being made, and
     * how many creates were served from them. */
    json_object_set_new(info, "pool",
                        json_pack("{s:o,s:i,s:i,s:I}", "images",
                                  d->cfg.pool ? json_incref(d->cfg.pool) : json_object(), "ready",
                                  (int)ready, "starting", (int)starting, "claimed",
                                  (json_int_t)claimed));
    /* What a client trusts to reach tls tunnels. */
    json_object_set_new(info, "tls",
                        json_pack("{s:s,s:s}", "certificate",
                                  d->tls_cert_pem ? d->tls_cert_pem : "", "sha256", d->tls_sha256));
    sbxd_reply_json(req, 200, info);
}

static void get_metrics(struct sbxd *d, sbxd_req *req)
{
    struct sbxd_http_stats hs;
    char buf[2048];
    int n;

    sbxd_http_get_stats(d->http, &hs);
    n = snprintf(buf, sizeof(buf),
                 "# HELP sandboxd_sandboxes_running Sandboxes not yet finished.\n"
                 "# TYPE sandboxd_sandboxes_running gauge\n"
                 "sandboxd_sandboxes_running %u\n"
                 "# HELP sandboxd_sandboxes_created_total Sandboxes created since start.\n"
                 "# TYPE sandboxd_sandboxes_created_total counter\n"
                 "sandboxd_sandboxes_created_total %llu\n"
                 "# HELP sandboxd_execs_total Processes exec'd since start.\n"
                 "# TYPE sandboxd_execs_total counter\n"
                 "sandboxd_execs_total %llu\n"
                 "# HELP sandboxd_http_requests_total HTTP requests since start.\n"
                 "# TYPE sandboxd_http_requests_total counter\n"
                 "sandboxd_http_requests_total %llu\n"
                 "# HELP sandboxd_http_connections Open HTTP connections.\n"
                 "# TYPE sandboxd_http_connections gauge\n"
                 "sandboxd_http_connections %u\n"
                 "# HELP sandboxd_uptime_seconds Seconds since the daemon started.\n"
                 "# TYPE sandboxd_uptime_seconds gauge\n"
                 "sandboxd_uptime_seconds %.3f\n",
                 d->n_running, d->created_total, d->execs_total, hs.requests, hs.connections,
                 sbxd_now() - d->started_at);
    sbxd_reply_bytes(req, 200, "text/plain; version=0.0.4", buf, (size_t)n);
}

/* ---- apps ---- */

static void put_app(struct sbxd *d, sbxd_req *req, const char *name)
{
    json_t *app;

    if (!sbxd_valid_name(name)) {
        sbxd_reply_error(req, 400, "invalid_argument",
                         "app name `%.64s` must match [A-Za-z0-9._-]{1,63}", name);
        return;
    }
    if (sbxd_app_ensure(d, name, &app) < 0) {
        sbxd_reply_error(req, 500, "internal", "cannot create app");
        return;
    }
    sbxd_reply_json(req, 200,
                    json_pack("{s:O,s:O}", "app_id", json_object_get(app, "app_id"), "name",
                              json_object_get(app, "name")));
}

static void get_app(struct sbxd *d, sbxd_req *req, const char *name)
{
    json_t *app = json_object_get(d->apps, name);

    if (!app) {
        sbxd_reply_error(req, 404, "not_found", "no app `%.64s`", name);
        return;
    }
    sbxd_reply_json(req, 200,
                    json_pack("{s:O,s:O}", "app_id", json_object_get(app, "app_id"), "name",
                              json_object_get(app, "name")));
}

static void list_apps(struct sbxd *d, sbxd_req *req)
{
    json_t *list = json_array(), *app;
    const char *key;

    json_object_foreach(d->apps, key, app)
    {
        json_array_append_new(list, json_pack("{s:O,s:O}", "app_id", json_object_get(app, "app_id"),
                                              "name", json_object_get(app, "name")));
    }
    sbxd_reply_json(req, 200, json_pack("{s:o}", "apps", list));
}

/* ---- creating a sandbox ---- */

static bool is_string_map(json_t *o)
{
    const char *k;
    json_t *v;

    if (!json_is_object(o))
        return false;
    json_object_foreach(o, k, v)
    {
        if (!json_is_string(v))
            return false;
    }
    return true;
}

static bool is_argv(json_t *a)
{
    size_t i;
    json_t *v;

    if (!json_is_array(a) || json_array_size(a) == 0 || json_array_size(a) > 4096)
        return false;
    json_array_foreach(a, i, v)
    {
        if (!json_is_string(v) || strlen(json_string_value(v)) > 65536)
            return false;
    }
    return true;
}

static bool valid_env_key(const char *k)
{
    if (!*k || strlen(k) > 256 || (*k >= '0' && *k <= '9'))
        return false;
    for (; *k; k++)
        if (!(*k >= 'A' && *k <= 'Z') && !(*k >= 'a' && *k <= 'z') && !(*k >= '0' && *k <= '9') &&
            *k != '_')
            return false;
    return true;
}

static bool valid_hostname(const char *h)
{
    size_t n = strlen(h);

    if (n == 0 || n > 63 || *h == '-')
        return false;
    for (; *h; h++)
        if (!(*h >= 'a' && *h <= 'z') && !(*h >= 'A' && *h <= 'Z') && !(*h >= '0' && *h <= '9') &&
            *h != '-' && *h != '.')
            return false;
    return true;
}

static const char *const known_fields[] = {
    "app",
    "name",
    "image",
    "entrypoint",
    "workdir",
    "env",
    "secrets",
    "timeout_s",
    "idle_timeout_s",
    "cpu",
    "cpu_limit",
    "memory_mib",
    "pids_max",
    "disk_mib",
    "block_network",
    "cidr_allowlist",
    "ports",
    "readiness_probe",
    "volumes",
    "mounts",
    "tags",
    "gpu",
    "hostname",
};

/* Validates the create body; replies 400 naming the field and returns false
 * on the first problem. */
/* "A.B.C.D" or "A.B.C.D/P" (P 0..32). */
static bool valid_cidr(const char *s)
{
    char buf[32], *slash, *end;
    struct in_addr a;
    long p = 32;

    if (!s || strlen(s) >= sizeof(buf))
        return false;
    snprintf(buf, sizeof(buf), "%s", s);
    if ((slash = strchr(buf, '/'))) {
        *slash = '\0';
        errno = 0;
        p = strtol(slash + 1, &end, 10);
        if (errno || *end || end == slash + 1 || p < 0 || p > 32)
            return false;
    }
    return inet_pton(AF_INET, buf, &a) == 1;
}

static bool validate_create(sbxd_req *req, json_t *body)
{
    const char *key;
    json_t *v;

    json_object_foreach(body, key, v)
    {
        bool known = false;
        for (size_t i = 0; i < sizeof(known_fields) / sizeof(known_fields[0]); i++)
            known |= !strcmp(key, known_fields[i]);
        if (!known) {
            sbxd_reply_error(req, 400, "invalid_argument", "unknown field `%.64s`", key);
            return false;
        }
    }
#define BAD(field, what)                                                                           \
    do {                                                                                           \
        sbxd_reply_error(req, 400, "invalid_argument", "field `%s` %s", field, what);              \
        return false;                                                                              \
    } while (0)
    if ((v = json_object_get(body, "app")) &&
        (!json_is_string(v) || !sbxd_valid_name(json_string_value(v))))
        BAD("app", "must be a name matching [A-Za-z0-9._-]{1,63}");
    if ((v = json_object_get(body, "name")) && !json_is_null(v) &&
        (!json_is_string(v) || !sbxd_valid_name(json_string_value(v))))
        BAD("name", "must match [A-Za-z0-9._-]{1,63}");
    if ((v = json_object_get(body, "image")) && !json_is_string(v))
        BAD("image", "must be a string");
    if ((v = json_object_get(body, "entrypoint")) && !json_is_null(v) && !is_argv(v))
        BAD("entrypoint", "must be a non-empty array of strings");
    if ((v = json_object_get(body, "workdir")) &&
        (!json_is_string(v) || json_string_value(v)[0] != '/' ||
         strlen(json_string_value(v)) > 4096))
        BAD("workdir", "must be an absolute path");
    if ((v = json_object_get(body, "env")) && !is_string_map(v))
        BAD("env", "must be an object of strings");
    if (v) {
        json_object_foreach(v, key, v)
        {
            if (!valid_env_key(key))
                BAD("env", "has a key that is not a variable name");
        }
    }
    if ((v = json_object_get(body, "timeout_s")) &&
        (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 86400))
        BAD("timeout_s", "must be an integer from 1 to 86400");
    if ((v = json_object_get(body, "idle_timeout_s")) && !json_is_null(v) &&
        (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 86400))
        BAD("idle_timeout_s", "must be an integer from 1 to 86400");
    if ((v = json_object_get(body, "cpu")) && !json_is_null(v) &&
        (!json_is_number(v) || json_number_value(v) <= 0 || json_number_value(v) > 1024))
        BAD("cpu", "must be a number of cores above 0");
    if ((v = json_object_get(body, "cpu_limit")) && !json_is_null(v) &&
        (!json_is_number(v) || json_number_value(v) <= 0 || json_number_value(v) > 1024))
        BAD("cpu_limit", "must be a number of cores above 0");
    if ((v = json_object_get(body, "memory_mib")) && !json_is_null(v) &&
        (!json_is_integer(v) || json_integer_value(v) < 8 || json_integer_value(v) > (1 << 24)))
        BAD("memory_mib", "must be an integer of at least 8");
    if ((v = json_object_get(body, "disk_mib")) && !json_is_null(v) &&
        (!json_is_integer(v) || json_integer_value(v) < 16 || json_integer_value(v) > (1 << 24)))
        BAD("disk_mib", "must be an integer from 16 to 16777216");
    if ((v = json_object_get(body, "pids_max")) && !json_is_null(v) &&
        (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1 << 22))
        BAD("pids_max", "must be a positive integer");
    if ((v = json_object_get(body, "tags")) && !is_string_map(v))
        BAD("tags", "must be an object of strings");
    if ((v = json_object_get(body, "hostname")) &&
        (!json_is_string(v) || !valid_hostname(json_string_value(v))))
        BAD("hostname", "must be a hostname of 1 to 63 characters");
    if ((v = json_object_get(body, "block_network")) && !json_is_null(v) && !json_is_boolean(v))
        BAD("block_network", "must be true or false");
    if ((v = json_object_get(body, "ports")) && !json_is_null(v)) {
        size_t i;
        json_t *p;

        if (!json_is_array(v) || json_array_size(v) > 16)
            BAD("ports", "must be an array of at most 16 ports");
        json_array_foreach(v, i, p)
        {
            json_t *n = json_is_object(p) ? json_object_get(p, "port") : p;
            json_t *tls = json_is_object(p) ? json_object_get(p, "tls") : NULL;
            if (!json_is_integer(n) || json_integer_value(n) < 1 || json_integer_value(n) > 65535 ||
                (tls && !json_is_boolean(tls)))
                BAD("ports", "must hold ports 1..65535 or {\"port\":N,\"tls\":bool}");
        }
    }
    if ((v = json_object_get(body, "readiness_probe")) && !json_is_null(v)) {
        json_t *tcp = json_object_get(v, "tcp"), *ex = json_object_get(v, "exec"), *iv;
        const char *member;
        json_t *x;

        if (!json_is_object(v) || (!tcp == !ex))
            BAD("readiness_probe", "must be {\"tcp\":PORT} or {\"exec\":[argv]}");
        if (tcp && (!json_is_integer(tcp) || json_integer_value(tcp) < 1 ||
                    json_integer_value(tcp) > 65535))
            BAD("readiness_probe", "has a `tcp` port that is not 1..65535");
        if (ex && !is_argv(ex))
            BAD("readiness_probe", "has an `exec` that is not a non-empty array of strings");
        iv = json_object_get(v, "interval_ms");
        if (iv &&
            (!json_is_integer(iv) || json_integer_value(iv) < 10 || json_integer_value(iv) > 60000))
            BAD("readiness_probe", "has an `interval_ms` that is not 10..60000");
        json_object_foreach(v, member, x)
        {
            if (strcmp(member, "tcp") && strcmp(member, "exec") && strcmp(member, "interval_ms"))
                BAD("readiness_probe", "has an unknown member");
        }
    }
    if ((v = json_object_get(body, "cidr_allowlist")) && !json_is_null(v)) {
        size_t i;
        json_t *c;

        if (!json_is_array(v) || json_array_size(v) > 64)
            BAD("cidr_allowlist", "must be an array of at most 64 IPv4 CIDRs");
        json_array_foreach(v, i, c)
        {
            if (!valid_cidr(json_string_value(c)))
                BAD("cidr_allowlist", "has an entry that is not an IPv4 A.B.C.D[/P]");
        }
        if (json_is_true(json_object_get(body, "block_network")))
            BAD("cidr_allowlist", "cannot go with block_network");
    }
    if ((v = json_object_get(body, "gpu")) && !json_is_null(v) && !json_is_false(v)) {
        sbxd_reply_error(req, 409, "failed_precondition", "field `gpu`: this host has no GPU");
        return false;
    }
#undef BAD
    return true;
}

static json_t *strv_json(char **v)
{
    json_t *a = json_array();

    for (; v && *v; v++)
        json_array_append_new(a, json_string(*v));
    return a;
}

/* The spec's network: the daemon's bridge (and its DNS servers) unless the
 * request blocks the network or the daemon has none: then loopback only. */
static json_t *network_spec(struct sbxd *d, json_t *body, json_t *spec)
{
    if (!spec)
        return NULL;
    if (json_is_object(json_object_get(body, "readiness_probe")))
        json_object_set(spec, "readiness_probe", json_object_get(body, "readiness_probe"));
    if (json_array_size(json_object_get(body, "ports")) > 0) {
        json_t *ports = json_array(), *p;
        size_t i;
        json_array_foreach(json_object_get(body, "ports"), i, p)
        {
            json_t *n = json_is_object(p) ? json_object_get(p, "port") : p;
            bool tls = json_is_true(json_object_get(p, "tls"));
            json_array_append_new(ports, json_pack("{s:O,s:b}", "port", n, "tls", tls));
            if (tls && !json_object_get(spec, "tls_cert")) {
                json_object_set_new(spec, "tls_cert", json_string(d->tls_cert));
                json_object_set_new(spec, "tls_key", json_string(d->tls_key));
            }
        }
        json_object_set_new(spec, "ports", ports);
        json_object_set_new(spec, "tunnel_bind", json_string(d->cfg.tunnel_bind));
    }
    if (json_is_true(json_object_get(body, "block_network"))) {
        json_object_set_new(spec, "block_network", json_true());
    } else if (d->cfg.network) {
        json_object_set_new(
            spec, "network",
            json_pack("{s:s,s:s}", "bridge", d->cfg.bridge, "subnet", d->cfg.subnet));
        json_object_set_new(spec, "resolv_conf", json_string(d->resolv_conf));
        if (json_is_array(json_object_get(body, "cidr_allowlist")))
            json_object_set(spec, "cidr_allowlist", json_object_get(body, "cidr_allowlist"));
    }
    return spec;
}

json_t *sbxd_make_spec(struct sbxd *d, json_t *body, const struct sbx_image *img, const char *id)
{
    return sbxd_make_spec_with(d, body, img, id, NULL, NULL);
}

json_t *sbxd_make_spec_with(struct sbxd *d, json_t *body, const struct sbx_image *img,
                            const char *id, json_t *secret_env, json_t *mounts)
{
    json_t *env = strv_json(img->env), *v, *spec;
    json_t *renv = json_object_get(body, "env");
    const char *key;
    double cpu = json_number_value(json_object_get(body, "cpu"));
    double cpu_limit = json_number_value(json_object_get(body, "cpu_limit"));
    json_int_t mem = json_integer_value(json_object_get(body, "memory_mib"));
    json_int_t pids = json_integer_value(json_object_get(body, "pids_max"));
    json_t *ep = json_object_get(body, "entrypoint");

    /* The image's environment, the secrets', then the request's own. */
    if (secret_env)
        json_array_extend(env, secret_env);
    json_object_foreach(renv, key, v)
    {
        char *kv;
        if (asprintf(&kv, "%s=%s", key, json_string_value(v)) >= 0) {
            json_array_append_new(env, json_string(kv));
            free(kv);
        }
    }
    if (!json_is_array(ep) && img->entrypoint)
        ep = NULL;
    spec = network_spec(
        d, body,
        json_pack("{s:o,s:o,s:s,s:o,s:s,s:i,s:i,s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:I,s:s}",
                  "image_layers", strv_json(img->layers), "env", env, "workdir",
                  json_string_value(json_object_get(body, "workdir")) ?: img->workdir, "entrypoint",
                  json_is_array(ep) ? json_incref(ep)
                                    : (img->entrypoint ? strv_json(img->entrypoint) : json_null()),
                  "hostname", json_string_value(json_object_get(body, "hostname")) ?: id, "uid",
                  (int)img->uid, "gid", (int)img->gid, "no_userns", 0, "memory_bytes",
                  (json_int_t)(mem ? (uint64_t)mem << 20 : d->cfg.default_memory_bytes), "pids_max",
                  (json_int_t)(pids ? pids : d->cfg.default_pids_max), "cpu_weight",
                  (json_int_t)(cpu > 0 ? (cpu * 100 > 10000 ? 10000
                                          : cpu * 100 < 1   ? 1
                                                            : cpu * 100)
                                       : 0),
                  "cpu_quota_us", (json_int_t)(cpu_limit > 0 ? cpu_limit * 100000 : 0),
                  "cpu_period_us", (json_int_t)100000, "timeout_s",
                  json_integer_value(json_object_get(body, "timeout_s")) ?: (json_int_t)300,
                  "idle_timeout_s",
                  json_is_integer(json_object_get(body, "idle_timeout_s"))
                      ? json_incref(json_object_get(body, "idle_timeout_s"))
                      : json_null(),
                  "output_limit", (json_int_t)d->cfg.output_limit, "cgroup_parent",
                  d->cfg.cgroup_parent));
    if (spec && json_array_size(mounts) > 0)
        json_object_set(spec, "mounts", mounts);
    if (spec && json_is_integer(json_object_get(body, "disk_mib")))
        json_object_set(spec, "disk_mib", json_object_get(body, "disk_mib"));
    return spec;
}

static void claimed(struct sbxd *d, struct sbxd_sandbox *sb, json_t *reply, void *data)
{
    (void)data;
    if (json_is_true(json_object_get(reply, "ok"))) {
        if (json_is_integer(json_object_get(reply, "init_pid")))
            sb->init_pid = (int)json_integer_value(json_object_get(reply, "init_pid"));
        sbxd_sandbox_sync(d, sb);
        return;
    }
    sbxd_log(sb->id, "the claim failed: %s",
             json_string_value(json_object_get(json_object_get(reply, "error"), "message"))
                 ?: "no message");
    sbxd_sandbox_finished(d, sb, -1, "error");
}

/* A create served by a pooled sandbox (pool.c): the request's records
 * replace the pooled ones, and the monitor applies the request's limits,
 * environment, timeouts and entrypoint ("claim").  The 201 goes at once,
 * as for a sandbox being made; requests sent after it (an exec) reach the
 * monitor after the claim. */
static void claim_sandbox(struct sbxd *d, sbxd_req *req, json_t *body, const struct sbx_image *img,
                          struct sbxd_sandbox *sb, json_t *secret_env)
{
    const char *name = json_string_value(json_object_get(body, "name"));
    json_t *spec, *rec, *claim;
    int r;

    free(sb->app);
    sb->app = strdup(json_string_value(json_object_get(body, "app")) ?: "default");
    sb->name = name ? strdup(name) : NULL;
    json_decref(sb->tags);
    sb->tags =
        json_object_get(body, "tags") ? json_incref(json_object_get(body, "tags")) : json_object();
    json_decref(sb->request);
    sb->request = json_incref(body);
    sb->created_at = sbxd_now();
    spec = sbxd_make_spec_with(d, body, img, sb->id, secret_env, NULL);
    rec = sbxd_sandbox_record_file(sb);
    sb->env = spec ? json_incref(json_object_get(spec, "env")) : NULL;
    free(sb->workdir);
    sb->workdir = json_string_value(json_object_get(spec, "workdir"))
                      ? strdup(json_string_value(json_object_get(spec, "workdir")))
                      : NULL;
    if (json_is_array(json_object_get(spec, "entrypoint")))
        sbxd_proc_add(sb, SBXD_ENTRYPOINT_ID, json_object_get(spec, "entrypoint"));
    /* record.json stays the pooled one until the record is next saved;
     * claim.json says what it became (registry.c reads both). */
    {
        json_t *c = spec && rec ? json_pack("{s:O,s:O}", "record", rec, "spec", spec) : NULL;
        r = c && sb->app ? sbxd_records_claim(d, sb->id, c) : -ENOMEM;
        json_decref(c);
    }
    if (sbxd_sandbox_link(d, sb) < 0 && r >= 0)
        r = -ENOMEM; /* not findable: ended as an error, below */
    d->n_running++;
    d->created_total++;
    if (r < 0) {
        sbxd_log(sb->id, "cannot write its records: %s", strerror(-r));
        sbxd_sandbox_finished(d, sb, -1, "error");
        (void)sbxd_monitor_request(d, sb, json_pack("{s:s}", "op", "shutdown"), NULL, NULL);
        sbxd_reply_error(req, 500, "internal", "cannot record the sandbox: %s", strerror(-r));
        goto out;
    }
    sbxd_sandbox_event(d, sb, "created");
    sbxd_log(sb->id, "created from the pool (app %s, image %s)", sb->app, sb->image);
    claim = json_pack(
        "{s:s,s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:O}", "op", "claim", "env",
        json_object_get(spec, "env"), "entrypoint", json_object_get(spec, "entrypoint"), "workdir",
        json_object_get(spec, "workdir"), "memory_bytes", json_object_get(spec, "memory_bytes"),
        "pids_max", json_object_get(spec, "pids_max"), "cpu_weight",
        json_object_get(spec, "cpu_weight"), "cpu_quota_us", json_object_get(spec, "cpu_quota_us"),
        "cpu_period_us", json_object_get(spec, "cpu_period_us"), "timeout_s",
        json_object_get(spec, "timeout_s"), "idle_timeout_s",
        json_object_get(spec, "idle_timeout_s"));
    if (!claim || sbxd_monitor_request(d, sb, claim, claimed, NULL) < 0) {
        sbxd_sandbox_finished(d, sb, -1, "error");
        sbxd_reply_error(req, 500, "internal", "cannot reach the sandbox's monitor");
        goto out;
    }
    sbxd_reply_json(req, 201, sbxd_sandbox_record(d, sb));
out:
    json_decref(spec);
    json_decref(rec);
}

static void create_sandbox(struct sbxd *d, sbxd_req *req)
{
    json_t *body = sbxd_req_json(req), *spec, *secret_env = json_array(), *mounts = json_array();
    const char *app, *name, *image;
    struct sbx_image *img = NULL;
    struct sbxd_sandbox *sb;
    sbx_error err;
    int r;

    if (!body)
        goto out;
    if (!validate_create(req, body))
        goto out;
    app = json_string_value(json_object_get(body, "app")) ?: "default";
    name = json_string_value(json_object_get(body, "name"));
    image = json_string_value(json_object_get(body, "image")) ?: "debian-slim";
    if (name && sbxd_sandbox_by_name(d, app, name)) {
        sbxd_reply_error(req, 409, "already_exists",
                         "a running sandbox of app `%s` is already named `%s`", app, name);
        goto out;
    }
    if (d->n_running >= d->cfg.max_sandboxes) {
        sbxd_reply_error(req, 429, "resource_exhausted", "%u sandboxes are running: the limit",
                         d->n_running);
        goto out;
    }
    if (sbxd_image_unready(d, image)) {
        sbxd_reply_error(req, 409, "failed_precondition", "image `%.128s` %s", image,
                         sbxd_image_unready(d, image));
        goto out;
    }
    if (sbxd_image_load(d, image, &img, &err) < 0) {
        sbxd_reply_error(req, err.code == ENOENT ? 404 : 400,
                         err.code == ENOENT ? "not_found" : "invalid_argument",
                         "image `%.128s`: %s", image,
                         err.code == ENOENT ? "no such image" : err.message);
        goto out;
    }
    /* Secrets and volumes named must be there (404); the volumes' names
     * in body become canonical before it is recorded. */
    if (!sbxd_secrets_env(d, req, json_object_get(body, "secrets"), secret_env) ||
        !sbxd_mounts_for_create(d, req, body, mounts))
        goto out;
    if (sbxd_app_ensure(d, app, NULL) < 0) {
        sbxd_reply_error(req, 500, "internal", "cannot create app `%s`", app);
        goto out;
    }
    if (json_array_size(mounts) == 0 && !img->user && sbxd_pool_fits(d, body) &&
        (sb = sbxd_pool_take(d, image, img))) {
        claim_sandbox(d, req, body, img, sb, secret_env);
        goto out;
    }
    sb = calloc(1, sizeof(*sb));
    if (!sb) {
        sbxd_reply_error(req, 500, "internal", "out of memory");
        goto out;
    }
    sbxd_new_id("sb-", sb->id, sizeof(sb->id));
    sb->app = strdup(app);
    sb->name = name ? strdup(name) : NULL;
    sb->image = strdup(image);
    sb->tags =
        json_object_get(body, "tags") ? json_incref(json_object_get(body, "tags")) : json_object();
    sb->request = json_incref(body);
    sb->created_at = sbxd_now();
    snprintf(sb->state, sizeof(sb->state), "created");
    sb->waiters.next = sb->waiters.prev = &sb->waiters;
    spec = sbxd_make_spec_with(d, body, img, sb->id, secret_env, mounts);
    sb->env = json_incref(json_object_get(spec, "env"));
    if (json_string_value(json_object_get(spec, "workdir")))
        sb->workdir = strdup(json_string_value(json_object_get(spec, "workdir")));
    sb->uid = img->uid; /* (execs run as the image's user, as Docker's) */
    sb->gid = img->gid;
    if (json_is_array(json_object_get(spec, "entrypoint")))
        sbxd_proc_add(sb, SBXD_ENTRYPOINT_ID, json_object_get(spec, "entrypoint"));

    {
        json_t *rec = sbxd_sandbox_record_file(sb);
        r = spec && rec ? sbxd_records_create(d, sb->id, spec, rec) : -ENOMEM;
        json_decref(rec);
    }
    json_decref(spec);
    if (sbxd_sandbox_link(d, sb) < 0 && r >= 0)
        r = -ENOMEM; /* not findable: ended as an error, below */
    d->n_running++;
    d->created_total++;
    if (r < 0) {
        sbxd_log(sb->id, "cannot write its records: %s", strerror(-r));
        sbxd_sandbox_finished(d, sb, -1, "error");
        sbxd_reply_error(req, 500, "internal", "cannot record the sandbox: %s", strerror(-r));
        goto out;
    }
    sbxd_sandbox_event(d, sb, "created");
    sbxd_log(sb->id, "created (app %s, image %s)", app, image);
    r = sbxd_monitor_start(d, sb);
    if (r < 0) {
        sbxd_sandbox_finished(d, sb, -1, "error");
        sbxd_reply_error(req, 500, "internal", "cannot start the sandbox's monitor: %s",
                         uv_strerror(r));
        goto out;
    }
    sbxd_reply_json(req, 201, sbxd_sandbox_record(d, sb));
out:
    sbx_image_free(img);
    json_decref(secret_env);
    json_decref(mounts);
    json_decref(body);
}

/* ---- reading sandboxes ---- */

static bool tags_match(struct sbxd_sandbox *sb, json_t *want)
{
    const char *k;
    json_t *v;

    json_object_foreach(want, k, v)
    {
        const char *have = json_string_value(json_object_get(sb->tags, k));
        if (!have || strcmp(have, json_string_value(v)))
            return false;
    }
    return true;
}

/* Collects the tag.K=V filters of a list request. */
static void collect_tag(const char *key, const char *value, void *data)
{
    if (!strncmp(key, "tag.", 4) && key[4])
        json_object_set_new(data, key + 4, json_string(value));
}

static void list_sandboxes(struct sbxd *d, sbxd_req *req)
{
    const char *app = sbxd_req_query(req, "app");
    const char *state = sbxd_req_query(req, "state") ?: "running";
    json_t *list, *want;

    if (strcmp(state, "running") && strcmp(state, "finished") && strcmp(state, "all")) {
        sbxd_reply_error(req, 400, "invalid_argument", "state must be running, finished or all");
        return;
    }
    list = json_array();
    want = json_object();
    sbxd_req_query_each(req, collect_tag, want);
    for (struct sbxd_sandbox *sb = d->sandboxes; sb; sb = sb->next) {
        bool finished = !strcmp(sb->state, "finished");

        if (sb->deleted || (app && strcmp(app, sb->app)))
            continue;
        if ((!strcmp(state, "running") && finished) || (!strcmp(state, "finished") && !finished))
            continue;
        /* Every tag asked for must match. */
        if (!tags_match(sb, want))
            continue;
        json_array_append_new(list, sbxd_sandbox_record(d, sb));
    }
    json_decref(want);
    sbxd_reply_json(req, 200, json_pack("{s:o}", "sandboxes", list));
}

/* Waits (timeout s) for sandbox_answer() to have the answer of kind. */
static void sandbox_wait_for(struct sbxd *d, sbxd_req *req, struct sbxd_sandbox *sb, int kind,
                             double timeout)
{
    struct sbxd_waiter *w;

    if (sandbox_answer(d, req, sb, kind))
        return;
    w = waiter_new(d, sb, req, kind);
    if (!w) {
        sbxd_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    uv_timer_start(&w->timer, wait_timeout, (uint64_t)(timeout * 1000), 0);
}

/* GET .../tunnels: the map once the monitor has its listeners (at once
 * for a sandbox without ports); 409 once finished, 504 at the timeout. */
static void tunnels_sandbox(struct sbxd *d, sbxd_req *req, struct sbxd_sandbox *sb)
{
    double timeout;

    if (!parse_timeout(req, sbxd_req_query(req, "timeout_s"), 50, 86400, &timeout))
        return;
    if (json_array_size(json_object_get(sb->request, "ports")) == 0)
        sbxd_reply_json(req, 200, json_object());
    else
        sandbox_wait_for(d, req, sb, SBXD_WAIT_TUNNELS, timeout);
}

/* GET .../ready: until the readiness probe passes (200 with the record);
 * 409 without a probe or once finished, 504 at the timeout (default 300 s). */
static void ready_sandbox(struct sbxd *d, sbxd_req *req, struct sbxd_sandbox *sb)
{
    double timeout;

    if (!json_is_object(json_object_get(sb->request, "readiness_probe"))) {
        sbxd_reply_error(req, 409, "failed_precondition", "sandbox `%s` has no readiness probe",
                         sb->id);
        return;
    }
    if (parse_timeout(req, sbxd_req_query(req, "timeout_s"), 300, 86400, &timeout))
        sandbox_wait_for(d, req, sb, SBXD_WAIT_READY, timeout);
}

static void wait_sandbox(struct sbxd *d, sbxd_req *req, struct sbxd_sandbox *sb)
{
    double timeout;

    if (!parse_timeout(req, sbxd_req_query(req, "timeout_s"), 55, 86400, &timeout))
        return;
    /* timeout_s=0: the record as it is. */
    if (timeout == 0)
        sbxd_reply_json(req, 200, sbxd_sandbox_record(d, sb));
    else
        sandbox_wait_for(d, req, sb, SBXD_WAIT_SANDBOX, timeout);
}

/* ---- terminate and delete ---- */

static void terminate_sandbox(struct sbxd *d, sbxd_req *req, struct sbxd_sandbox *sb)
{
    json_t *body = sbxd_req_json(req);
    bool wait;

    if (!body)
        return;
    wait = json_is_true(json_object_get(body, "wait"));
    json_decref(body);
    if (strcmp(sb->state, "finished")) {
        if (sbxd_monitor_request(d, sb, json_pack("{s:s}", "op", "terminate"), NULL, NULL) < 0) {
            /* No monitor to ask: it is gone or not yet up.  Without one
             * nothing can run either; record the end. */
            if (!sb->mon)
                sbxd_sandbox_finished(d, sb, 137, "terminated");
        }
    }
    if (!wait)
        sbxd_reply_json(req, 200, sbxd_sandbox_record(d, sb));
    else
        sandbox_wait_for(d, req, sb, SBXD_WAIT_SANDBOX, 60);
}

/* Forgets a sandbox: its records go, clients still waiting get answers. */
static void forget_now(struct sbxd *d, sbxd_req *req, struct sbxd_sandbox *sb)
{
    /* A second DELETE whose monitor answer comes while the first one is
     * forgetting the sandbox (its pending requests are answered then). */
    if (sb->deleted) {
        sbxd_reply_empty(req, 204);
        return;
    }
    sb->deleted = true;
    if (strcmp(sb->state, "finished"))
        sbxd_sandbox_finished(d, sb, 137, "terminated");
    sbxd_log(sb->id, "deleted");
    sbxd_records_remove(d, sb->id);
    sbxd_reply_empty(req, 204);
    sbxd_sandbox_forget(d, sb);
}

static void shut_down(struct sbxd *d, struct sbxd_sandbox *sb, json_t *reply, void *data)
{
    (void)reply;
    /* The monitor has the order (or is gone): whatever runs is being killed
     * and the monitor writes nothing more that the daemon reads. */
    forget_now(d, data, sb);
}

static void delete_sandbox(struct sbxd *d, sbxd_req *req, struct sbxd_sandbox *sb)
{
    /* A running sandbox's monitor must get the order before the daemon
     * drops its connection: wait for its answer. */
    if (strcmp(sb->state, "finished") &&
        sbxd_monitor_request(d, sb, json_pack("{s:s}", "op", "shutdown"), shut_down, req) == 0)
        return;
    forget_now(d, req, sb);
}

/* ---- tags, events, stats ---- */

static void put_tags(struct sbxd *d, sbxd_req *req, struct sbxd_sandbox *sb)
{
    json_t *body = sbxd_req_json(req), *tags;

    if (!body)
        return;
    tags = json_object_get(body, "tags") ? json_object_get(body, "tags") : body;
    if (!is_string_map(tags)) {
        sbxd_reply_error(req, 400, "invalid_argument", "tags must be an object of strings");
        json_decref(body);
        return;
    }
    json_decref(sb->tags);
    sb->tags = json_incref(tags);
    json_decref(body);
    sbxd_sandbox_save(d, sb);
    sbxd_reply_json(req, 200, json_pack("{s:O}", "tags", sb->tags));
}

/* Sends events.ndjson from the waiter's offset; with follow, stays until the
 * sandbox has finished and its last event is out. */
static void events_pump(struct sbxd *d, struct sbxd_waiter *w)
{
    char *path = sbxd_records_path(d, w->sb->id, "events.ndjson");
    FILE *f = path ? fopen(path, "re") : NULL;
    char line[1024];

    free(path);
    if (f && fseeko(f, (off_t)w->offset, SEEK_SET) == 0) {
        while (fgets(line, sizeof(line), f)) {
            size_t n = strlen(line);
            if (line[n - 1] != '\n')
                break; /* a line still being written: next time */
            sbxd_stream_write(w->stream, line, n);
            w->offset += n;
        }
    }
    if (f)
        fclose(f);
    if (!w->follow || !strcmp(w->sb->state, "finished")) {
        sbxd_stream_end(w->stream);
        waiter_free(w);
    }
}

static void get_events(struct sbxd *d, sbxd_req *req, struct sbxd_sandbox *sb)
{
    struct sbxd_waiter *w = waiter_new(d, sb, req, SBXD_WAIT_EVENTS);

    if (!w) {
        sbxd_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    w->follow = query_flag(req, "follow");
    w->stream = sbxd_reply_stream(req, 200, "application/x-ndjson");
    events_pump(d, w);
}

static void got_stats(struct sbxd *d, struct sbxd_sandbox *sb, json_t *reply, void *data)
{
    sbxd_req *req = data;

    (void)d;
    (void)sb;
    if (!json_is_true(json_object_get(reply, "ok"))) {
        reply_sandbox_error(req, reply);
        return;
    }
    sbxd_reply_json(req, 200, json_incref(json_object_get(reply, "stats")));
}

static void get_stats(struct sbxd *d, sbxd_req *req, struct sbxd_sandbox *sb)
{
    if (sbxd_monitor_request(d, sb, json_pack("{s:s}", "op", "stats"), got_stats, req) < 0)
        sbxd_reply_error(req, 409, "failed_precondition", "sandbox `%s` is not running", sb->id);
}

/* ---- exec and processes ---- */

static void exec_started(struct sbxd *d, struct sbxd_sandbox *sb, json_t *reply, void *data)
{
    sbxd_req *req = data;
    struct sbxd_proc *p = sbxd_req_get_data(req);

    if (!json_is_true(json_object_get(reply, "ok"))) {
        if (p) {
            p->has_returncode = true;
            p->returncode = -1;
            p->eof[0] = p->eof[1] = true;
        }
        reply_sandbox_error(req, reply);
        return;
    }
    d->execs_total++;
    sbxd_log(sb->id, "exec %s", p ? p->id : "?");
    sbxd_reply_json(req, 201, json_pack("{s:s}", "process_id", p ? p->id : ""));
}

static void exec_process(struct sbxd *d, sbxd_req *req, struct sbxd_sandbox *sb)
{
    json_t *body = sbxd_req_json(req), *v, *msg, *env;
    char id[32];
    struct sbxd_proc *p;
    const char *key;

    if (!body)
        return;
    if (!strcmp(sb->state, "finished")) {
        sbxd_reply_error(req, 409, "failed_precondition", "sandbox `%s` has finished", sb->id);
        goto out;
    }
    if (!is_argv(json_object_get(body, "argv"))) {
        sbxd_reply_error(req, 400, "invalid_argument",
                         "field `argv` must be a non-empty array of strings");
        goto out;
    }
    json_object_foreach(body, key, v)
    {
        static const char *const ok[] = {"argv",    "env",    "workdir", "timeout_s",
                                         "secrets", "stdout", "stderr",  "pty"};
        bool known = false;
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
            known |= !strcmp(key, ok[i]);
        if (!known) {
            sbxd_reply_error(req, 400, "invalid_argument", "unknown field `%.64s`", key);
            goto out;
        }
    }
    if ((v = json_object_get(body, "env")) && !is_string_map(v)) {
        sbxd_reply_error(req, 400, "invalid_argument", "field `env` must be an object of strings");
        goto out;
    }
    if ((v = json_object_get(body, "workdir")) &&
        (!json_is_string(v) || json_string_value(v)[0] != '/')) {
        sbxd_reply_error(req, 400, "invalid_argument", "field `workdir` must be an absolute path");
        goto out;
    }
    if ((v = json_object_get(body, "timeout_s")) && !json_is_null(v) &&
        (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 86400)) {
        sbxd_reply_error(req, 400, "invalid_argument",
                         "field `timeout_s` must be an integer from 1 to 86400");
        goto out;
    }
    for (int i = 0; i < 2; i++) {
        const char *f = i ? "stderr" : "stdout";
        const char *s = json_string_value(json_object_get(body, f));
        if (json_object_get(body, f) && (!s || (strcmp(s, "pipe") && strcmp(s, "devnull") &&
                                                (i == 0 || strcmp(s, "stdout"))))) {
            sbxd_reply_error(req, 400, "invalid_argument", "field `%s` must be %s", f,
                             i ? "pipe, devnull or stdout" : "pipe or devnull");
            goto out;
        }
    }
    if ((v = json_object_get(body, "pty")) && !json_is_null(v) &&
        (!json_is_object(v) ||
         (json_object_get(v, "rows") && !json_is_integer(json_object_get(v, "rows"))) ||
         (json_object_get(v, "cols") && !json_is_integer(json_object_get(v, "cols"))))) {
        sbxd_reply_error(req, 400, "invalid_argument",
                         "field `pty` must be {\"rows\":N,\"cols\":N}");
        goto out;
    }
    if (sb->n_procs >= d->cfg.max_execs) {
        sbxd_reply_error(req, 429, "resource_exhausted",
                         "sandbox `%s` has run %u processes: the limit", sb->id, sb->n_procs);
        goto out;
    }
    if (!sb->env) {
        /* A sandbox from before a restart: its spec.json, once. */
        char *spec_path = sbxd_records_path(d, sb->id, "spec.json");
        json_t *spec = spec_path ? sbxd_read_json(spec_path) : NULL;
        free(spec_path);
        if (json_is_array(json_object_get(spec, "env")))
            sb->env = json_incref(json_object_get(spec, "env"));
        sb->uid = (unsigned)json_integer_value(json_object_get(spec, "uid"));
        sb->gid = (unsigned)json_integer_value(json_object_get(spec, "gid"));
        if (!sb->workdir && json_string_value(json_object_get(spec, "workdir")))
            sb->workdir = strdup(json_string_value(json_object_get(spec, "workdir")));
        json_decref(spec);
    }
    /* The sandbox's environment, the exec's secrets', then its own. */
    env = sb->env ? json_copy(sb->env) : json_array();
    if (!sbxd_secrets_env(d, req, json_object_get(body, "secrets"), env)) {
        json_decref(env);
        goto out;
    }
    json_object_foreach(json_object_get(body, "env"), key, v)
    {
        char *kv;
        if (asprintf(&kv, "%s=%s", key, json_string_value(v)) >= 0) {
            json_array_append_new(env, json_string(kv));
            free(kv);
        }
    }
    sbxd_new_id("pr-", id, sizeof(id));
    p = sbxd_proc_add(sb, id, json_object_get(body, "argv"));
    if (!p) {
        json_decref(env);
        sbxd_reply_error(req, 500, "internal", "out of memory");
        goto out;
    }
    msg = json_pack("{s:s,s:s,s:O,s:o,s:s,s:i,s:i,s:s,s:s,s:O?,s:O?}", "op", "exec", "id", id,
                    "argv", json_object_get(body, "argv"), "env", env, "workdir",
                    json_string_value(json_object_get(body, "workdir")) ?: sb->workdir ?: "/", "uid", (int)sb->uid,
                    "gid", (int)sb->gid, "stdout",
                    json_string_value(json_object_get(body, "stdout")) ?: "pipe", "stderr",
                    json_string_value(json_object_get(body, "stderr")) ?: "pipe", "pty",
                    json_object_get(body, "pty"), "timeout_s", json_object_get(body, "timeout_s"));
    sbxd_req_set_data(req, p);
    if (sbxd_monitor_request(d, sb, msg, exec_started, req) < 0) {
        p->has_returncode = true;
        p->returncode = -1;
        sbxd_reply_error(req, 503, "unavailable", "sandbox `%s`'s monitor is not reachable yet",
                         sb->id);
    }
out:
    json_decref(body);
}

static json_t *proc_json(struct sbxd_proc *p)
{
    return json_pack("{s:s,s:O,s:o,s:f}", "process_id", p->id, "argv", p->argv, "returncode",
                     p->has_returncode ? json_integer(p->returncode) : json_null(), "started_at",
                     p->started_at);
}

static void list_processes(struct sbxd *d, sbxd_req *req, struct sbxd_sandbox *sb)
{
    json_t *list = json_array();

    (void)d;
    for (struct sbxd_proc *p = sb->procs; p; p = p->next)
        if (strcmp(p->id, SBXD_ENTRYPOINT_ID))
            json_array_append_new(list, proc_json(p));
    sbxd_reply_json(req, 200, json_pack("{s:o}", "processes", list));
}

static void wait_process(struct sbxd *d, sbxd_req *req, struct sbxd_sandbox *sb,
                         struct sbxd_proc *p)
{
    double timeout;
    struct sbxd_waiter *w;

    if (!parse_timeout(req, sbxd_req_query(req, "timeout_s"), 55, 86400, &timeout))
        return;
    if (p->has_returncode || timeout == 0) {
        sbxd_reply_json(req, 200,
                        json_pack("{s:o}", "returncode",
                                  p->has_returncode ? json_integer(p->returncode) : json_null()));
        return;
    }
    w = waiter_new(d, sb, req, SBXD_WAIT_PROC);
    if (!w) {
        sbxd_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    w->proc = p;
    uv_timer_start(&w->timer, wait_timeout, (uint64_t)(timeout * 1000), 0);
}

static void stream_output(struct sbxd *d, sbxd_req *req, struct sbxd_sandbox *sb,
                          struct sbxd_proc *p, int stream)
{
    const char *off = sbxd_req_query(req, "offset");
    struct sbxd_waiter *w;
    uint64_t offset = 0, dropped = 0;
    char hdr[32];

    if (off) {
        char *end;
        errno = 0;
        offset = strtoull(off, &end, 10);
        if (errno || end == off || *end || off[0] == '-') {
            sbxd_reply_error(req, 400, "invalid_argument", "offset must be a byte count");
            return;
        }
    }
    dropped = sbxd_output_oldest(d, sb->id, p->id, stream);
    if (offset < dropped) {
        snprintf(hdr, sizeof(hdr), "%llu", (unsigned long long)(dropped - offset));
        sbxd_reply_header(req, "X-Sandboxd-Dropped", hdr);
        offset = dropped;
    }
    w = waiter_new(d, sb, req, SBXD_WAIT_STREAM);
    if (!w) {
        sbxd_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    w->proc = p;
    w->stream_index = stream;
    w->offset = offset;
    w->follow = query_flag(req, "follow");
    w->stream = sbxd_reply_stream(req, 200, "application/octet-stream");
    sbxd_stream_pull(w->stream, stream_pull, stream_dry, w);
}

/* A monitor reply to an action: 204, or the monitor's error. */
static void acted(struct sbxd *d, struct sbxd_sandbox *sb, json_t *reply, void *data)
{
    sbxd_req *req = data;

    (void)d;
    (void)sb;
    if (!json_is_true(json_object_get(reply, "ok"))) {
        reply_sandbox_error(req, reply);
        return;
    }
    sbxd_reply_empty(req, 204);
}

/* Raw bytes per monitor message: base64 makes them 4/3 as large, well
 * under the protocol's 1 MiB line. */
#define STDIN_CHUNK (512 * 1024)

static char *base64(const unsigned char *data, size_t len)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *enc = malloc(4 * ((len + 2) / 3) + 1);
    size_t o = 0;

    if (!enc)
        return NULL;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)data[i] << 16 | (i + 1 < len ? (unsigned)data[i + 1] << 8 : 0) |
                     (i + 2 < len ? data[i + 2] : 0);
        enc[o++] = b64[v >> 18 & 63];
        enc[o++] = b64[v >> 12 & 63];
        enc[o++] = i + 1 < len ? b64[v >> 6 & 63] : '=';
        enc[o++] = i + 2 < len ? b64[v & 63] : '=';
    }
    enc[o] = '\0';
    return enc;
}

/* The body goes to the monitor in chunks, in order; the reply to the last
 * one (which carries eof) answers the client.  An error in an earlier chunk
 * is reported by the monitor again for the later ones (stdin closed or its
 * queue full), so the client learns of it. */
static void write_stdin(struct sbxd *d, sbxd_req *req, struct sbxd_sandbox *sb, struct sbxd_proc *p)
{
    size_t len, off = 0;
    const unsigned char *data = sbxd_req_body(req, &len);
    bool eof = query_flag(req, "eof");

    do {
        size_t n = len - off > STDIN_CHUNK ? STDIN_CHUNK : len - off;
        bool last = off + n >= len;
        char *enc = base64(data + off, n);
        json_t *msg;

        if (!enc) {
            sbxd_reply_error(req, 500, "internal", "out of memory");
            return;
        }
        msg = json_pack("{s:s,s:s,s:s,s:b}", "op", "stdin", "id", p->id, "data", enc, "eof",
                        last && eof);
        free(enc);
        if (sbxd_monitor_request(d, sb, msg, last ? acted : NULL, last ? req : NULL) < 0) {
            sbxd_reply_error(req, 409, "failed_precondition", "sandbox `%s` is not running",
                             sb->id);
            return;
        }
        off += n;
    } while (off < len);
}

static void signal_process(struct sbxd *d, sbxd_req *req, struct sbxd_sandbox *sb,
                           struct sbxd_proc *p, bool resize)
{
    json_t *body = sbxd_req_json(req), *msg;

    if (!body)
        return;
    if (resize) {
        json_t *r = json_object_get(body, "rows"), *c = json_object_get(body, "cols");
        if (!json_is_integer(r) || !json_is_integer(c) || json_integer_value(r) < 1 ||
            json_integer_value(r) > 65535 || json_integer_value(c) < 1 ||
            json_integer_value(c) > 65535) {
            sbxd_reply_error(req, 400, "invalid_argument",
                             "rows and cols must be integers from 1 to 65535");
            json_decref(body);
            return;
        }
        msg = json_pack("{s:s,s:s,s:O,s:O}", "op", "resize", "id", p->id, "rows", r, "cols", c);
    } else {
        json_t *s = json_object_get(body, "signal");
        if (!json_is_integer(s) || json_integer_value(s) < 1 || json_integer_value(s) > 64) {
            sbxd_reply_error(req, 400, "invalid_argument",
                             "signal must be an integer from 1 to 64");
            json_decref(body);
            return;
        }
        msg = json_pack("{s:s,s:s,s:O}", "op", "signal", "id", p->id, "signal", s);
    }
    json_decref(body);
    if (sbxd_monitor_request(d, sb, msg, acted, req) < 0)
        sbxd_reply_error(req, 409, "failed_precondition", "sandbox `%s` is not running", sb->id);
}

/* ---- routing ---- */

#define IS(m) (!strcmp(method, m))

static void route_process(struct sbxd *d, sbxd_req *req, const char *method,
                          struct sbxd_sandbox *sb, const char *pid, const char *what)
{
    struct sbxd_proc *p = sbxd_proc_find(sb, pid);

    if (!p || !strcmp(pid, SBXD_ENTRYPOINT_ID)) {
        sbxd_reply_error(req, 404, "not_found", "no process `%.64s` in sandbox `%s`", pid, sb->id);
        return;
    }
    if (!what)
        sbxd_reply_json(req, 200, proc_json(p));
    else if (IS("GET") && !strcmp(what, "stdout"))
        stream_output(d, req, sb, p, 0);
    else if (IS("GET") && !strcmp(what, "stderr"))
        stream_output(d, req, sb, p, 1);
    else if (IS("POST") && !strcmp(what, "stdin"))
        write_stdin(d, req, sb, p);
    else if (IS("GET") && !strcmp(what, "wait"))
        wait_process(d, req, sb, p);
    else if (IS("POST") && !strcmp(what, "signal"))
        signal_process(d, req, sb, p, false);
    else if (IS("POST") && !strcmp(what, "resize"))
        signal_process(d, req, sb, p, true);
    else
        sbxd_reply_error(req, 404, "not_found", "no such endpoint");
}

static void route_sandbox(struct sbxd *d, sbxd_req *req, const char *method, char segs[8][128],
                          size_t n)
{
    struct sbxd_sandbox *sb = sbxd_sandbox_find(d, segs[2]);
    const char *what = n > 3 ? segs[3] : NULL;

    if (!sb) {
        sbxd_reply_error(req, 404, "not_found", "no sandbox `%.64s`", segs[2]);
        return;
    }
    if (n == 3) {
        if (IS("GET"))
            sbxd_reply_json(req, 200, sbxd_sandbox_record(d, sb));
        else if (IS("DELETE"))
            delete_sandbox(d, req, sb);
        else
            sbxd_reply_error(req, 405, "invalid_argument", "method %s not allowed here", method);
        return;
    }
    if (n >= 5 && !strcmp(what, "processes")) {
        route_process(d, req, method, sb, segs[4], n > 5 ? segs[5] : NULL);
        return;
    }
    if (n != 4) {
        sbxd_reply_error(req, 404, "not_found", "no such endpoint");
        return;
    }
    if (IS("GET") && !strcmp(what, "wait"))
        wait_sandbox(d, req, sb);
    else if (IS("POST") && !strcmp(what, "terminate"))
        terminate_sandbox(d, req, sb);
    else if (IS("PUT") && !strcmp(what, "tags"))
        put_tags(d, req, sb);
    else if (IS("GET") && !strcmp(what, "tags"))
        sbxd_reply_json(req, 200, json_pack("{s:O}", "tags", sb->tags));
    else if (IS("GET") && !strcmp(what, "events"))
        get_events(d, req, sb);
    else if (IS("GET") && !strcmp(what, "stats"))
        get_stats(d, req, sb);
    else if (IS("POST") && !strcmp(what, "exec"))
        exec_process(d, req, sb);
    else if (IS("GET") && !strcmp(what, "processes"))
        list_processes(d, req, sb);
    else if (!strcmp(what, "files") || !strcmp(what, "ls") || !strcmp(what, "mkdir"))
        sbxd_files_handle(d, req, sb, what);
    else if (IS("GET") && !strcmp(what, "ready"))
        ready_sandbox(d, req, sb);
    else if (IS("GET") && !strcmp(what, "tunnels"))
        tunnels_sandbox(d, req, sb);
    else if (IS("POST") && !strcmp(what, "snapshot"))
        sbxd_snapshot(d, req, sb);
    else if (IS("POST") && !strcmp(what, "snapshot-directory"))
        sbxd_snapshot_directory(d, req, sb);
    else if (IS("POST") && !strcmp(what, "mount-image"))
        sbxd_mount_image(d, req, sb);
    else if ((!strcmp(what, "stdout") || !strcmp(what, "stderr") || !strcmp(what, "stdin"))) {
        struct sbxd_proc *p = sbxd_proc_find(sb, SBXD_ENTRYPOINT_ID);
        if (!p) {
            sbxd_reply_error(req, 409, "failed_precondition", "sandbox `%s` has no entrypoint",
                             sb->id);
            return;
        }
        if (IS("GET") && strcmp(what, "stdin"))
            stream_output(d, req, sb, p, !strcmp(what, "stderr"));
        else if (IS("POST") && !strcmp(what, "stdin"))
            write_stdin(d, req, sb, p);
        else
            sbxd_reply_error(req, 405, "invalid_argument", "method %s not allowed here", method);
    } else
        sbxd_reply_error(req, 404, "not_found", "no such endpoint");
}

void sbxd_api_handle(sbxd_req *req, void *data)
{
    struct sbxd *d = data;
    const char *method = sbxd_req_method(req);
    char segs[8][128];
    size_t n = split_path(sbxd_req_path(req), segs);

    if (n == 1 && !strcmp(segs[0], "metrics") && IS("GET")) {
        get_metrics(d, req);
        return;
    }
    if (n < 2 || n > 8 || strcmp(segs[0], "v1")) {
        sbxd_reply_error(req, 404, "not_found", "no such endpoint");
        return;
    }
    if (n == 2 && !strcmp(segs[1], "health") && IS("GET"))
        get_health(d, req);
    else if (n == 2 && !strcmp(segs[1], "info") && IS("GET"))
        get_info(d, req);
    else if (n == 2 && !strcmp(segs[1], "apps") && IS("GET"))
        list_apps(d, req);
    else if (n == 3 && !strcmp(segs[1], "apps") && IS("PUT"))
        put_app(d, req, segs[2]);
    else if (n == 3 && !strcmp(segs[1], "apps") && IS("GET"))
        get_app(d, req, segs[2]);
    else if (n == 5 && !strcmp(segs[1], "apps") && !strcmp(segs[3], "sandboxes") && IS("GET")) {
        struct sbxd_sandbox *sb = sbxd_sandbox_by_name(d, segs[2], segs[4]);
        if (sb)
            sbxd_reply_json(req, 200, sbxd_sandbox_record(d, sb));
        else
            sbxd_reply_error(req, 404, "not_found", "no running sandbox `%.64s` in app `%.64s`",
                             segs[4], segs[2]);
    } else if (n >= 2 && !strcmp(segs[1], "images"))
        sbxd_images_handle(d, req, segs, n);
    else if (n >= 2 && !strcmp(segs[1], "volumes"))
        sbxd_volumes_handle(d, req, segs, n);
    else if (n >= 2 && !strcmp(segs[1], "secrets"))
        sbxd_secrets_handle(d, req, segs, n);
    else if (n == 2 && !strcmp(segs[1], "sandboxes") && IS("POST"))
        create_sandbox(d, req);
    else if (n == 2 && !strcmp(segs[1], "sandboxes") && IS("GET"))
        list_sandboxes(d, req);
    else if (n >= 3 && !strcmp(segs[1], "sandboxes"))
        route_sandbox(d, req, method, segs, n);
    else
        sbxd_reply_error(req, 404, "not_found", "no such endpoint");
}
