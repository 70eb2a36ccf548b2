/* http.h — the daemon's HTTP layer: libmicrohttpd driven by the daemon's
 * libuv loop (MHD's external-event-loop mode, no thread per connection),
 * on a unix socket (mode 0660) and optionally on TCP (bearer tokens
 * required), with limits on bodies, headers and connections, JSON errors of
 * ../shared/API.md, long polls and chunked streams.
 *
 * Contract:
 * - The handler is called once per request, on the loop's thread, after the
 *   headers AND the whole body have arrived (bodies above max_body get 413
 *   without the handler being called).  Authentication (TCP) has been checked.
 * - Each request gets exactly one reply, now or later: a handler may return
 *   without replying and reply from any later loop callback (long polls).
 *   The connection is suspended meanwhile.  If the client goes away first,
 *   the on_abort callback runs and the request must not be used after it.
 * - A stream reply is chunked; sbxd_stream_write() queues bytes and they are
 *   flushed as soon as the socket takes them (no added delay).  A stream ends
 *   with sbxd_stream_end(), or by the client going away (on_abort).
 */
#ifndef SBXD_HTTP_H
#define SBXD_HTTP_H

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

typedef struct sbxd_http sbxd_http;
typedef struct sbxd_req sbxd_req;

struct sbxd_http_config {
    const char *unix_path;      /* required; created mode 0660, replaced if stale */
    const char *tcp_listen;     /* "HOST:PORT" or NULL */
    const char *const *tokens;  /* bearer tokens accepted on TCP (NULL-terminated) */
    size_t max_body;            /* bytes; default 16 MiB */
    size_t max_header;          /* bytes of request line + headers; default 64 KiB */
    unsigned max_connections;   /* default 1024 */
    unsigned max_pending_bytes; /* per stream, queued but unsent; default 4 MiB */
    /* Uploads too big for memory: requests `spooled` says yes to get their
     * body in a file in spool_dir (removed with the request), up to
     * max_spool bytes (default 8 GiB). */
    bool (*spooled)(const char *method, const char *path);
    const char *spool_dir;
    uint64_t max_spool;
};

typedef void (*sbxd_handler)(sbxd_req *req, void *data);

int sbxd_http_start(uv_loop_t *loop, const struct sbxd_http_config *cfg, sbxd_handler handler,
                    void *data, sbxd_http **ret);
/* Closes the listeners and every connection (aborting pending requests). */
void sbxd_http_stop(sbxd_http *http);

/* ---- the request ---- */
const char *sbxd_req_method(const sbxd_req *req);
const char *sbxd_req_path(const sbxd_req *req);                   /* without the query */
const char *sbxd_req_query(const sbxd_req *req, const char *key); /* NULL if absent */
/* Calls cb for every query argument, in order (values URL-decoded). */
void sbxd_req_query_each(const sbxd_req *req,
                         void (*cb)(const char *key, const char *value, void *data), void *data);
const char *sbxd_req_header(const sbxd_req *req, const char *name); /* case-insensitive */
const void *sbxd_req_body(const sbxd_req *req, size_t *ret_len);    /* never NULL */
/* A spooled request's body: the file's path (NULL when not spooled); it
 * is removed with the request unless the handler moves it away. */
const char *sbxd_req_body_file(const sbxd_req *req, uint64_t *ret_len);
/* The body parsed as a JSON object (an empty body is {}); NULL after having
 * replied 400 invalid_argument with the parse error. */
json_t *sbxd_req_json(sbxd_req *req);

/* Called (at most once) if the client disconnects before the reply is done. */
void sbxd_req_on_abort(sbxd_req *req, void (*cb)(sbxd_req *req, void *data), void *data);
/* Opaque slot for the handler's own per-request state. */
void sbxd_req_set_data(sbxd_req *req, void *data);
void *sbxd_req_get_data(const sbxd_req *req);

/* ---- replies (exactly one per request) ---- */
void sbxd_reply_json(sbxd_req *req, int status, json_t *body); /* steals body */
void sbxd_reply_error(sbxd_req *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void sbxd_reply_empty(sbxd_req *req, int status);
void sbxd_reply_bytes(sbxd_req *req, int status, const char *content_type, const void *data,
                      size_t len);
/* Adds a response header to the reply made next (or to the stream). */
void sbxd_reply_header(sbxd_req *req, const char *name, const char *value);

typedef struct sbxd_stream sbxd_stream;
/* Starts a chunked reply; headers added with sbxd_reply_header() before are sent. */
sbxd_stream *sbxd_reply_stream(sbxd_req *req, int status, const char *content_type);
/* Queues bytes; returns the bytes now queued and unsent (callers with a
 * producer may pause above cfg.max_pending_bytes and wait for on_drain). */
size_t sbxd_stream_write(sbxd_stream *s, const void *data, size_t len);
void sbxd_stream_on_drain(sbxd_stream *s, void (*cb)(sbxd_stream *s, void *data), void *data);
/* Pull mode, for a producer whose bytes are already somewhere (a file):
 * once the queue is empty, `pull` is called whenever the socket can take
 * more, with room for `max` bytes, and returns how many it put in buf (the
 * bytes go straight into the HTTP layer's send buffer), or 0 when it has
 * nothing now.  After a 0 the stream waits and `on_dry` runs (from the
 * loop, never from inside `pull`): the owner ends the stream there, or calls
 * sbxd_stream_kick() once there may be more.  `pull` must not call back into
 * this API.  A NULL pull leaves pull mode.  Returning SBXD_PULL_FAILED
 * cuts the stream: the client sees it end without the last chunk (a broken
 * transfer, which it may resume), and on_abort runs. */
#define SBXD_PULL_FAILED ((size_t)-1)
void sbxd_stream_pull(sbxd_stream *s, size_t (*pull)(void *buf, size_t max, void *data),
                      void (*on_dry)(sbxd_stream *s, void *data), void *data);
void sbxd_stream_kick(sbxd_stream *s);
/* Ends the stream once what is queued is sent. */
void sbxd_stream_end(sbxd_stream *s);

/* Counters for /v1/info and /metrics. */
struct sbxd_http_stats {
    unsigned long long requests, responses_4xx, responses_5xx;
    unsigned connections;
};
void sbxd_http_get_stats(const sbxd_http *http, struct sbxd_http_stats *ret);

#endif
