/* pool.c — sandboxes made ahead of time, put to use by a create.
 *
 * A create that reaches the runtime pays for everything a sandbox is made
 * of: its records, its monitor, its namespaces, root file system and
 * cgroup (bench/api: 5 ms and more, much of it the disk's).  For the images
 * named in the config's "pool" ({"debian-slim": 2}) the daemon keeps that
 * many sandboxes made ahead: each has its id, records, monitor and a
 * running, idle sandbox (init waiting, nothing of anyone's run in it), with
 * the daemon's default limits and no timeout.  Pooled sandboxes are
 * nobody's: they are not listed, found, counted as running or reachable by
 * id.  A create whose request such a sandbox can serve (same image, same
 * layers, no hostname of its own) takes one instead of making one: the
 * request's records are written, and the monitor is sent a "claim" with
 * the request's limits, environment, workdir, timeouts and entrypoint,
 * which it applies and starts (daemon/monitor-proto.h).  Everything else a
 * create does (names, apps, tags, events, the 201) is the same.  A sandbox
 * is taken from the pool once and never goes back to it: a pooled sandbox
 * is as fresh as a new one.
 *
 * The pool is refilled one sandbox at a time, POOL_REFILL_MS after the
 * last take (a client's next requests come first), and not for
 * POOL_RETRY_MS after a pooled sandbox failed or died unclaimed.  At a
 * clean stop the daemon shuts its pooled sandboxes down; after a crash it
 * finds their records ("pooled": true in record.json) and shuts them down
 * at its next start. */
#include "sandboxd.h"

#include "image.h"
#include "sbx.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#define POOL_REFILL_MS 20
#define POOL_RETRY_MS  10000

static struct {
    uv_timer_t timer;
    bool started, stopping;
    uint64_t retry_at; /* uv_now() before which nothing is made */
    unsigned made, claimed, failed;
} pool;

static unsigned wanted(struct sbxd *d, const char *image)
{
    json_t *n = json_object_get(d->cfg.pool, image);

    return json_is_integer(n) ? (unsigned)json_integer_value(n) : 0;
}

/* Removes a pooled sandbox from the list, its records and itself. */
static void drop(struct sbxd *d, struct sbxd_sandbox *sb)
{
    struct sbxd_sandbox **pp = &d->pool;

    while (*pp && *pp != sb)
        pp = &(*pp)->next;
    if (*pp)
        *pp = sb->next;
    sbxd_records_remove(d, sb->id);
    sbxd_sandbox_forget(d, sb);
}

static void shut_down_done(struct sbxd *d, struct sbxd_sandbox *sb, json_t *reply, void *data)
{
    (void)reply, (void)data;
    /* The monitor has the order: it kills the sandbox and exits. */
    drop(d, sb);
}

/* Ends a pooled sandbox nobody needs (surplus, stale, found after a crash). */
static void shut_down(struct sbxd *d, struct sbxd_sandbox *sb)
{
    if (sb->pool_doomed)
        return;
    sb->pool_doomed = true;
    if (strcmp(sb->state, "finished") == 0 ||
        sbxd_monitor_request(d, sb, json_pack("{s:s}", "op", "shutdown"), shut_down_done, NULL) < 0)
        drop(d, sb);
}

/* A pooled sandbox's memory limit when the daemon has no default one: the
 * host's memory.  It must have one from the start (its OOM notification is
 * set up at create) for a claim to set the request's. */
static uint64_t pool_memory(struct sbxd *d)
{
    struct sysinfo si;

    if (d->cfg.default_memory_bytes)
        return d->cfg.default_memory_bytes;
    if (sysinfo(&si) < 0 || si.totalram == 0)
        return 0;
    return (uint64_t)si.totalram * si.mem_unit;
}

static struct sbxd_sandbox *pooled_new(struct sbxd *d, const char *image,
                                       const struct sbx_image *img)
{
    struct sbxd_sandbox *sb = calloc(1, sizeof(*sb));

    if (!sb)
        return NULL;
    sb->waiters.next = sb->waiters.prev = &sb->waiters;
    snprintf(sb->state, sizeof(sb->state), "created");
    sbxd_new_id("sb-", sb->id, sizeof(sb->id));
    sb->pooled = true;
    sb->app = strdup("default");
    sb->image = strdup(image);
    sb->tags = json_object();
    sb->request = json_object();
    sb->pool_layers = json_array();
    for (char **l = img->layers; l && *l && sb->pool_layers; l++)
        json_array_append_new(sb->pool_layers, json_string(*l));
    if (!sb->app || !sb->image || !sb->tags || !sb->request || !sb->pool_layers) {
        sbxd_sandbox_forget(d, sb);
        return NULL;
    }
    return sb;
}

static int make_one(struct sbxd *d, const char *image)
{
    struct sbx_image *img = NULL;
    json_t *spec = NULL, *rec = NULL, *body = json_object();
    struct sbxd_sandbox *sb = NULL;
    sbx_error err;
    int r;

    r = sbxd_image_load(d, image, &img, &err);
    if (r < 0) {
        sbxd_log(NULL, "pool: image `%s`: %s", image, err.message);
        goto out;
    }
    sb = pooled_new(d, image, img);
    spec = sb && body ? sbxd_make_spec(d, body, img, sb->id) : NULL;
    rec = sb ? sbxd_sandbox_record_file(sb) : NULL;
    if (!spec || !rec) {
        r = -ENOMEM;
        goto out;
    }
    /* Idle, no timeouts, the entrypoint (if the image has one) comes with
     * the claim. */
    json_object_set_new(spec, "pooled", json_true());
    json_object_set_new(spec, "entrypoint", json_null());
    json_object_set_new(spec, "timeout_s", json_integer(0));
    json_object_set_new(spec, "idle_timeout_s", json_null());
    json_object_set_new(spec, "memory_bytes", json_integer((json_int_t)pool_memory(d)));
    json_object_set_new(rec, "pooled", json_true());
    r = sbxd_records_create(d, sb->id, spec, rec);
    if (r < 0) {
        sbxd_log(sb->id, "pool: cannot write its records: %s", strerror(-r));
        goto out;
    }
    sb->next = d->pool;
    d->pool = sb;
    r = sbxd_monitor_start(d, sb);
    if (r < 0) {
        sbxd_log(sb->id, "pool: cannot start its monitor: %s", uv_strerror(r));
        d->pool = sb->next;
        sbxd_records_remove(d, sb->id);
        goto out;
    }
    pool.made++;
    sbxd_log(sb->id, "pooled (image %s)", image);
    sb = NULL;
out:
    if (sb)
        sbxd_sandbox_forget(d, sb);
    json_decref(spec);
    json_decref(rec);
    json_decref(body);
    sbx_image_free(img);
    return r;
}

static void fill(uv_timer_t *t);

static void arm(struct sbxd *d, uint64_t ms)
{
    (void)d;
    if (pool.started && !pool.stopping)
        uv_timer_start(&pool.timer, fill, ms, 0);
}

/* One step: drops the dead, shuts a surplus one down or makes one more. */
static void fill(uv_timer_t *t)
{
    struct sbxd *d = t->data;
    const char *image;
    json_t *n;

    for (struct sbxd_sandbox *sb = d->pool, *next; sb; sb = next) {
        next = sb->next;
        if (strcmp(sb->state, "finished") == 0 && !sb->pool_doomed) {
            /* It died unclaimed (or could not be made): not again at once. */
            sbxd_log(sb->id, "pool: the pooled sandbox ended (%s)",
                     sb->finish_reason[0] ? sb->finish_reason : "unknown");
            pool.failed++;
            pool.retry_at = uv_now(d->loop) + POOL_RETRY_MS;
            drop(d, sb);
        }
    }
    if (uv_now(d->loop) < pool.retry_at) {
        arm(d, pool.retry_at - uv_now(d->loop));
        return;
    }
    /* Surplus: an image no longer pooled, or fewer wanted than there are. */
    for (struct sbxd_sandbox *sb = d->pool; sb; sb = sb->next) {
        unsigned have = 0;
        if (sb->pool_doomed)
            continue;
        for (struct sbxd_sandbox *o = d->pool; o; o = o->next)
            if (!o->pool_doomed && !strcmp(o->image, sb->image))
                have++;
        if (have > wanted(d, sb->image)) {
            shut_down(d, sb);
            arm(d, POOL_REFILL_MS);
            return;
        }
    }
    json_object_foreach(d->cfg.pool, image, n)
    {
        unsigned have = 0;
        for (struct sbxd_sandbox *sb = d->pool; sb; sb = sb->next)
            if (!sb->pool_doomed && !strcmp(sb->image, image))
                have++;
        if (have < wanted(d, image)) {
            if (make_one(d, image) < 0) {
                pool.failed++;
                pool.retry_at = uv_now(d->loop) + POOL_RETRY_MS;
                arm(d, POOL_RETRY_MS);
            } else {
                arm(d, POOL_REFILL_MS);
            }
            return;
        }
    }
}

void sbxd_pool_start(struct sbxd *d)
{
    uv_timer_init(d->loop, &pool.timer);
    pool.timer.data = d;
    pool.started = true;
    /* Pooled sandboxes a crashed daemon left: nobody's, ended. */
    for (struct sbxd_sandbox *sb = d->pool, *next; sb; sb = next) {
        next = sb->next;
        sbxd_log(sb->id, "pool: left by an earlier run: shutting it down");
        shut_down(d, sb);
    }
    uv_timer_start(&pool.timer, fill, POOL_REFILL_MS, 0);
}

static void stop_timeout(uv_timer_t *t)
{
    (void)t; /* wakes the loop below */
}

/* Whether a monitor still runs: it removes its socket as it exits, once
 * its sandbox is destroyed. */
static bool monitor_runs(struct sbxd *d, const struct sbxd_sandbox *sb)
{
    char path[PATH_MAX];

    snprintf(path, sizeof(path), "%s/monitors/%s.sock", d->cfg.run_dir, sb->id);
    return access(path, F_OK) == 0;
}

void sbxd_pool_stop(struct sbxd *d)
{
    uint64_t until;
    bool waiting = true;

    if (!pool.started)
        return;
    pool.stopping = true;
    uv_timer_stop(&pool.timer);
    for (struct sbxd_sandbox *sb = d->pool; sb; sb = sb->next)
        if (strcmp(sb->state, "finished"))
            (void)sbxd_monitor_request(d, sb, json_pack("{s:s}", "op", "shutdown"), NULL, NULL);
    /* Until every monitor has destroyed its sandbox and gone (so that the
     * cgroup parent can be pruned after us): 3 s at most. */
    until = uv_now(d->loop) + 3000;
    while (waiting && uv_now(d->loop) < until) {
        uv_timer_start(&pool.timer, stop_timeout, 10, 0);
        uv_run(d->loop, UV_RUN_ONCE);
        waiting = false;
        for (struct sbxd_sandbox *sb = d->pool; sb && !waiting; sb = sb->next)
            waiting = monitor_runs(d, sb);
    }
    while (d->pool)
        drop(d, d->pool);
    uv_timer_stop(&pool.timer);
    uv_close((uv_handle_t *)&pool.timer, NULL);
}

void sbxd_pool_kick(struct sbxd *d)
{
    arm(d, POOL_REFILL_MS);
}

bool sbxd_pool_fits(struct sbxd *d, json_t *body)
{
    json_t *v;

    (void)d;
    /* A pooled sandbox's hostname is its id, set when it was made; its
     * network is the daemon's. */
    if ((v = json_object_get(body, "hostname")) && !json_is_null(v))
        return false;
    if (json_is_true(json_object_get(body, "block_network")) ||
        json_is_array(json_object_get(body, "cidr_allowlist")) ||
        json_is_object(json_object_get(body, "readiness_probe")) ||
        json_array_size(json_object_get(body, "ports")) > 0 ||
        json_object_size(json_object_get(body, "volumes")) > 0 ||
        json_is_integer(json_object_get(body, "disk_mib")) ||
        json_array_size(json_object_get(body, "mounts")) > 0)
        return false;
    return true;
}

struct sbxd_sandbox *sbxd_pool_take(struct sbxd *d, const char *image, const struct sbx_image *img)
{
    struct sbxd_sandbox **pp;

    for (pp = &d->pool; *pp; pp = &(*pp)->next) {
        struct sbxd_sandbox *sb = *pp;
        size_t n = 0;
        bool same = true;

        if (!sb->pool_ready || sb->pool_doomed || strcmp(sb->state, "finished") == 0 ||
            strcmp(sb->image, image) != 0)
            continue;
        /* An image rebuilt since: this one is stale. */
        for (char **l = img->layers; l && *l; l++, n++)
            if (n >= json_array_size(sb->pool_layers) ||
                strcmp(*l, json_string_value(json_array_get(sb->pool_layers, n))) != 0)
                same = false;
        if (!same || n != json_array_size(sb->pool_layers)) {
            shut_down(d, sb);
            arm(d, POOL_REFILL_MS);
            return sbxd_pool_take(d, image, img);
        }
        *pp = sb->next;
        sb->next = NULL;
        sb->pooled = false;
        json_decref(sb->pool_layers);
        sb->pool_layers = NULL;
        pool.claimed++;
        arm(d, POOL_REFILL_MS);
        return sb;
    }
    return NULL;
}

void sbxd_pool_stats(struct sbxd *d, unsigned *ready, unsigned *starting,
                     unsigned long long *claimed)
{
    *ready = *starting = 0;
    for (struct sbxd_sandbox *sb = d->pool; sb; sb = sb->next) {
        if (sb->pool_doomed)
            continue;
        if (sb->pool_ready)
            (*ready)++;
        else
            (*starting)++;
    }
    *claimed = pool.claimed;
}
