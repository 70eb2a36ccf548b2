/* registry.c — the daemon's sandboxes and apps, and their records on disk.
 *
 * STATE/records/ID/record.json is the daemon's own record of a sandbox (what
 * was asked, app, name, tags); the monitor writes the rest of that directory
 * (events, exit codes, output).  At start the daemon rebuilds its table from
 * these directories, so a restart loses nothing. */
#include "sandboxd.h"

#include "sbx.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *sbxd_records_path(struct sbxd *d, const char *id, const char *rest)
{
    char *s;

    if (asprintf(&s, "%s/records/%s%s%s", d->cfg.state_dir, id, rest ? "/" : "", rest ? rest : "") <
        0)
        return NULL;
    return s;
}

struct sbxd_sandbox *sbxd_sandbox_find(struct sbxd *d, const char *id)
{
    struct sbxd_sandbox *sb = sbxd_index_get(&d->sandbox_index, id);

    return sb && !sb->deleted ? sb : NULL;
}

/* Into d->sandboxes (newest first) and its index; -ENOMEM: listed, but
 * not found by id. */
int sbxd_sandbox_link(struct sbxd *d, struct sbxd_sandbox *sb)
{
    sb->next = d->sandboxes;
    d->sandboxes = sb;
    return sbxd_index_put(&d->sandbox_index, sb->id, sb);
}

struct sbxd_sandbox *sbxd_sandbox_by_name(struct sbxd *d, const char *app, const char *name)
{
    for (struct sbxd_sandbox *sb = d->sandboxes; sb; sb = sb->next)
        if (!sb->deleted && sb->name && !strcmp(sb->name, name) && !strcmp(sb->app, app) &&
            strcmp(sb->state, "finished"))
            return sb;
    return NULL;
}

struct sbxd_proc *sbxd_proc_find(struct sbxd_sandbox *sb, const char *id)
{
    return sbxd_index_get(&sb->proc_index, id);
}

/* Processes are kept oldest first (API: "oldest first"). */
struct sbxd_proc *sbxd_proc_add(struct sbxd_sandbox *sb, const char *id, json_t *argv)
{
    struct sbxd_proc *p = calloc(1, sizeof(*p));

    if (!p)
        return NULL;
    snprintf(p->id, sizeof(p->id), "%s", id);
    if (sbxd_index_put(&sb->proc_index, p->id, p) < 0) {
        free(p);
        return NULL;
    }
    p->argv = argv ? json_incref(argv) : json_array();
    p->started_at = sbxd_now();
    if (sb->procs_tail)
        sb->procs_tail->next = p;
    else
        sb->procs = p;
    sb->procs_tail = p;
    sb->n_procs++;
    return p;
}

static json_t *time_or_null(double t)
{
    return t > 0 ? json_real(t) : json_null();
}

json_t *sbxd_sandbox_record(struct sbxd *d, struct sbxd_sandbox *sb)
{
    json_t *req = sb->request;
    json_t *resources = json_pack(
        "{s:O?,s:O?,s:O?,s:O?,s:O?}", "memory_mib", json_object_get(req, "memory_mib"), "cpu",
        json_object_get(req, "cpu"), "cpu_limit", json_object_get(req, "cpu_limit"), "pids_max",
        json_object_get(req, "pids_max"), "disk_mib", json_object_get(req, "disk_mib"));

    (void)d;
    return json_pack(
        "{s:s,s:s,s:s?,s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:O,s:o,s:o}", "sandbox_id", sb->id, "app",
        sb->app, "name", sb->name, "image", sb->image, "state", sb->state, "created_at",
        time_or_null(sb->created_at), "started_at", time_or_null(sb->started_at), "ready_at",
        time_or_null(sb->ready_at), "finished_at", time_or_null(sb->finished_at), "returncode",
        sb->has_returncode ? json_integer(sb->returncode) : json_null(), "finish_reason",
        sb->finish_reason[0] ? json_string(sb->finish_reason) : json_null(), "tags", sb->tags,
        "tunnels",
        sb->tunnels && strcmp(sb->state, "finished") ? json_incref(sb->tunnels) : json_object(),
        "resources", resources ? resources : json_object());
}

json_t *sbxd_sandbox_record_file(struct sbxd_sandbox *sb)
{
    return json_pack("{s:s,s:s,s:s?,s:s,s:O,s:O,s:f}", "sandbox_id", sb->id, "app", sb->app, "name",
                     sb->name, "image", sb->image, "tags", sb->tags, "request", sb->request,
                     "created_at", sb->created_at);
}

int sbxd_sandbox_save(struct sbxd *d, struct sbxd_sandbox *sb)
{
    char *path = sbxd_records_path(d, sb->id, "record.json");
    json_t *rec = sbxd_sandbox_record_file(sb);
    int r;

    if (!path || !rec) {
        free(path);
        json_decref(rec);
        return -ENOMEM;
    }
    r = sbxd_write_json(path, rec, false);
    if (r < 0)
        sbxd_log(sb->id, "write %s: %s", path, strerror(-r));
    free(path);
    json_decref(rec);
    return r;
}

void sbxd_sandbox_event(struct sbxd *d, struct sbxd_sandbox *sb, const char *event)
{
    char *path = sbxd_records_path(d, sb->id, "events.ndjson");
    char line[256];
    int fd, n;

    n = snprintf(line, sizeof(line), "{\"event\":\"%s\",\"at\":%.6f}\n", event, sbxd_now());
    if (path && (fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) >= 0) {
        /* One small O_APPEND write: whole even beside the monitor's own. */
        if (write(fd, line, (size_t)n) != n)
            sbxd_log(sb->id, "append event %s: %s", event, strerror(errno));
        close(fd);
    }
    free(path);
    sbxd_wake_sandbox(d, sb);
}

static double *state_time(struct sbxd_sandbox *sb, const char *state)
{
    if (!strcmp(state, "started"))
        return &sb->started_at;
    if (!strcmp(state, "ready"))
        return &sb->ready_at;
    if (!strcmp(state, "finished"))
        return &sb->finished_at;
    return NULL;
}

void sbxd_sandbox_set_state(struct sbxd *d, struct sbxd_sandbox *sb, const char *state)
{
    static const char *const order[] = {"created", "scheduled", "started", "ready", "finished"};
    int cur = -1, next = -1;
    double *t;

    for (int i = 0; i < 5; i++) {
        if (!strcmp(order[i], sb->state))
            cur = i;
        if (!strcmp(order[i], state))
            next = i;
    }
    /* States only move forward. */
    if (next <= cur)
        return;
    snprintf(sb->state, sizeof(sb->state), "%s", state);
    t = state_time(sb, state);
    if (t && *t == 0)
        *t = sbxd_now();
    sbxd_wake_sandbox(d, sb);
}

void sbxd_sandbox_finished(struct sbxd *d, struct sbxd_sandbox *sb, int returncode,
                           const char *reason)
{
    if (!strcmp(sb->state, "finished"))
        return;
    sb->has_returncode = returncode >= 0;
    sb->returncode = returncode;
    snprintf(sb->finish_reason, sizeof(sb->finish_reason), "%s", reason ? reason : "error");
    if (sb->pooled)
        sbxd_pool_kick(d); /* not counted as running: it was nobody's */
    else if (d->n_running > 0)
        d->n_running--;
    sbxd_log(sb->id, "finished: %s, returncode %d", sb->finish_reason, returncode);
    sbxd_sandbox_set_state(d, sb, "finished");
    if (!sb->pooled)
        sbxd_volumes_release(d, sb);
    /* Processes the monitor could not report finished with the sandbox. */
    for (struct sbxd_proc *p = sb->procs; p; p = p->next) {
        p->eof[0] = p->eof[1] = true;
        if (!p->has_returncode) {
            p->has_returncode = true;
            p->returncode = 137;
        }
        sbxd_wake_proc(d, sb, p);
        sbxd_wake_streams(d, sb, p);
    }
}

static void proc_free(struct sbxd_proc *p)
{
    json_decref(p->argv);
    free(p);
}

void sbxd_sandbox_forget(struct sbxd *d, struct sbxd_sandbox *sb)
{
    struct sbxd_sandbox **pp = &d->sandboxes;

    while (*pp && *pp != sb)
        pp = &(*pp)->next;
    if (*pp) {
        *pp = sb->next;
        sbxd_index_del(&d->sandbox_index, sb->id);
    }
    sbxd_waiters_drop(sb);
    sbxd_monitor_close(sb);
    while (sb->procs) {
        struct sbxd_proc *p = sb->procs;
        sb->procs = p->next;
        proc_free(p);
    }
    sbxd_index_free(&sb->proc_index);
    free(sb->app);
    free(sb->name);
    free(sb->image);
    json_decref(sb->tags);
    json_decref(sb->request);
    json_decref(sb->env);
    free(sb->workdir);
    json_decref(sb->pool_layers);
    json_decref(sb->tunnels);
    json_decref(sb->mounted_images);
    free(sb);
}

int sbxd_app_ensure(struct sbxd *d, const char *name, json_t **ret)
{
    json_t *app = json_object_get(d->apps, name);

    if (!app) {
        char id[32], *path;

        sbxd_new_id("ap-", id, sizeof(id));
        app = json_pack("{s:s,s:s,s:f}", "app_id", id, "name", name, "created_at", sbxd_now());
        if (!app)
            return -ENOMEM;
        json_object_set_new(d->apps, name, app);
        if (asprintf(&path, "%s/apps.json", d->cfg.state_dir) >= 0) {
            int r = sbxd_write_json(path, d->apps, true);
            if (r < 0)
                sbxd_log(NULL, "write %s: %s", path, strerror(-r));
            free(path);
        }
    }
    if (ret)
        *ret = app;
    return 0;
}

/* ---- loading at start ---- */

/* A process's start, exit or stream ends: a line of procs.ndjson, or the
 * info.json and exit.json of a monitor from before it (proc_id given). */
static struct sbxd_proc *load_proc_record(struct sbxd_sandbox *sb, const char *proc_id, json_t *rec)
{
    const char *id = proc_id ? proc_id : json_string_value(json_object_get(rec, "process_id"));
    json_t *argv = json_object_get(rec, "argv"), *v;
    struct sbxd_proc *p;
    size_t i;

    if (!id || !id[0] || id[0] == '.' || strlen(id) >= sizeof(p->id) || strchr(id, '/'))
        return NULL;
    p = sbxd_proc_find(sb, id);
    if (!p)
        p = sbxd_proc_add(sb, id, argv);
    if (!p)
        return NULL;
    if (json_is_number(json_object_get(rec, "started_at")))
        p->started_at = json_number_value(json_object_get(rec, "started_at"));
    if (json_is_integer(json_object_get(rec, "returncode")) && !p->has_returncode) {
        p->has_returncode = true;
        p->returncode = (int)json_integer_value(json_object_get(rec, "returncode"));
    }
    json_array_foreach(json_object_get(rec, "eof"), i, v)
    {
        for (int s = 0; s < 2; s++)
            if (json_is_string(v) && !strcmp(json_string_value(v), s ? "stderr" : "stdout"))
                p->eof[s] = true;
    }
    return p;
}

static void load_procs(struct sbxd *d, struct sbxd_sandbox *sb)
{
    char *path_log = sbxd_records_path(d, sb->id, "procs.ndjson");
    char *dir = sbxd_records_path(d, sb->id, "procs");
    FILE *f = path_log ? fopen(path_log, "re") : NULL;
    DIR *dh = dir ? opendir(dir) : NULL;
    struct dirent *de;
    char *line = NULL;
    size_t cap = 0;

    /* argv lines can be long (up to a request's size): getline. */
    while (f && getline(&line, &cap, f) > 0) {
        json_t *rec = json_loads(line, 0, NULL);
        load_proc_record(sb, NULL, rec);
        json_decref(rec);
    }
    free(line);
    if (f)
        fclose(f);
    free(path_log);
    /* Records of a monitor from before procs.ndjson. */
    while (dh && (de = readdir(dh))) {
        char path[PATH_MAX];
        json_t *info, *ex;
        struct sbxd_proc *p;

        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s/info.json", dir, de->d_name);
        if (!(info = sbxd_read_json(path)))
            continue;
        p = load_proc_record(sb, de->d_name, info);
        json_decref(info);
        snprintf(path, sizeof(path), "%s/%s/exit.json", dir, de->d_name);
        ex = p ? sbxd_read_json(path) : NULL;
        if (ex)
            load_proc_record(sb, de->d_name, ex);
        json_decref(ex);
        for (int s = 0; p && s < 2; s++) {
            snprintf(path, sizeof(path), "%s/%s/%s.eof", dir, de->d_name, s ? "stderr" : "stdout");
            p->eof[s] = p->eof[s] || access(path, F_OK) == 0;
        }
    }
    if (dh)
        closedir(dh);
    free(dir);
    for (struct sbxd_proc *p = sb->procs; p; p = p->next) {
        for (int s = 0; s < 2; s++)
            p->size[s] = sbxd_output_size(d, sb->id, p->id, s);
        if (p->has_returncode)
            sbxd_wake_proc(d, sb, p);
        sbxd_wake_streams(d, sb, p);
    }
}

/* Replays events.ndjson into the state and times. */
static void load_events(struct sbxd *d, struct sbxd_sandbox *sb)
{
    char *path = sbxd_records_path(d, sb->id, "events.ndjson");
    FILE *f = path ? fopen(path, "re") : NULL;
    char line[1024];

    while (f && fgets(line, sizeof(line), f)) {
        json_error_t jerr;
        json_t *ev = json_loads(line, 0, &jerr);
        const char *name = json_string_value(json_object_get(ev, "event"));
        double at = json_number_value(json_object_get(ev, "at"));

        if (name && strcmp(name, "finished")) {
            double *t = state_time(sb, name);
            sbxd_sandbox_set_state(d, sb, name);
            if (t && at > 0)
                *t = at;
        }
        json_decref(ev);
    }
    if (f)
        fclose(f);
    free(path);
}

/* Reads exit.json; true if the sandbox has finished. */
static bool load_exit(struct sbxd *d, struct sbxd_sandbox *sb)
{
    char *path = sbxd_records_path(d, sb->id, "exit.json");
    json_t *ex = path ? sbxd_read_json(path) : NULL, *rc;

    free(path);
    if (!ex)
        return false;
    rc = json_object_get(ex, "returncode");
    sbxd_sandbox_finished(d, sb, json_is_integer(rc) ? (int)json_integer_value(rc) : -1,
                          json_string_value(json_object_get(ex, "finish_reason")));
    if (json_is_number(json_object_get(ex, "finished_at")))
        sb->finished_at = json_number_value(json_object_get(ex, "finished_at"));
    json_decref(ex);
    return true;
}

/* The tunnels the monitor opened (tunnels.json), if any. */
static void load_tunnels(struct sbxd *d, struct sbxd_sandbox *sb)
{
    char *path = sbxd_records_path(d, sb->id, "tunnels.json");
    json_t *t = path ? sbxd_read_json(path) : NULL;

    free(path);
    if (json_is_object(t)) {
        json_decref(sb->tunnels);
        sb->tunnels = t;
    } else {
        json_decref(t);
    }
}

bool sbxd_sandbox_sync(struct sbxd *d, struct sbxd_sandbox *sb)
{
    load_events(d, sb);
    load_procs(d, sb);
    load_tunnels(d, sb);
    return !strcmp(sb->state, "finished") || load_exit(d, sb);
}

static struct sbxd_sandbox *load_one(struct sbxd *d, const char *id)
{
    char *path = sbxd_records_path(d, id, "record.json");
    json_t *rec = path ? sbxd_read_json(path) : NULL, *ex;
    struct sbxd_sandbox *sb;

    json_t *claim = NULL;

    free(path);
    if (!rec)
        return NULL;
    /* A pooled sandbox that was claimed: claim.json has its record (until
     * record.json is saved again) and its spec; one that cannot be read was
     * being written when the daemon died, before the create was answered:
     * the sandbox is still nobody's. */
    if (json_is_true(json_object_get(rec, "pooled"))) {
        path = sbxd_records_path(d, id, "claim.json");
        claim = path ? sbxd_read_json(path) : NULL;
        free(path);
        if (json_is_object(json_object_get(claim, "record"))) {
            json_decref(rec);
            rec = json_incref(json_object_get(claim, "record"));
        }
    }
    sb = calloc(1, sizeof(*sb));
    if (!sb) {
        json_decref(rec);
        json_decref(claim);
        return NULL;
    }
    if (json_is_array(json_object_get(json_object_get(claim, "spec"), "env")))
        sb->env = json_incref(json_object_get(json_object_get(claim, "spec"), "env"));
    json_decref(claim);
    snprintf(sb->id, sizeof(sb->id), "%s", id);
    sb->app = strdup(json_string_value(json_object_get(rec, "app")) ?: "default");
    sb->name = json_string_value(json_object_get(rec, "name"))
                   ? strdup(json_string_value(json_object_get(rec, "name")))
                   : NULL;
    sb->image = strdup(json_string_value(json_object_get(rec, "image")) ?: "");
    sb->tags = json_incref(json_object_get(rec, "tags"));
    if (!json_is_object(sb->tags)) {
        json_decref(sb->tags);
        sb->tags = json_object();
    }
    sb->request = json_incref(json_object_get(rec, "request"));
    if (!sb->request)
        sb->request = json_object();
    sb->created_at = json_number_value(json_object_get(rec, "created_at"));
    sb->pooled = json_is_true(json_object_get(rec, "pooled"));
    snprintf(sb->state, sizeof(sb->state), "created");
    sb->waiters.next = sb->waiters.prev = &sb->waiters;
    json_decref(rec);
    load_events(d, sb);
    load_procs(d, sb);
    load_tunnels(d, sb);
    {
        /* The images mounted into it (mount-image): in use while it runs. */
        char *mpath = sbxd_records_path(d, sb->id, "mounted_images.json");
        json_t *m = mpath ? sbxd_read_json(mpath) : NULL;
        free(mpath);
        if (json_is_array(m))
            sb->mounted_images = m;
        else
            json_decref(m);
    }

    (void)ex;
    if (sb->pooled) {
        (void)load_exit(d, sb);
        return sb;
    }
    d->n_running++; /* sbxd_sandbox_finished() counts it down */
    if (!load_exit(d, sb))
        d->n_running--;
    return sb;
}

/* Runtime leftovers with no monitor to own them: a daemon that crashed
 * between making a sandbox's directories and recording it, or a monitor
 * killed outright.  A live monitor (its socket answers) is left alone. */
static void clean_orphans(struct sbxd *d)
{
    char path[PATH_MAX];
    DIR *dh;
    struct dirent *de;

    snprintf(path, sizeof(path), "%s/sandboxes", d->cfg.run_dir);
    dh = opendir(path);
    while (dh && (de = readdir(dh))) {
        struct sbxd_sandbox *sb;
        char sock[PATH_MAX];
        sbx_error err;

        if (!sbxd_valid_id(de->d_name, "sb-"))
            continue;
        sb = sbxd_sandbox_find(d, de->d_name);
        if (sb && strcmp(sb->state, "finished"))
            continue;
        snprintf(sock, sizeof(sock), "%s/monitors/%s.sock", d->cfg.run_dir, de->d_name);
        if (access(sock, F_OK) == 0)
            continue;
        sbxd_log(de->d_name, "orphaned runtime state: cleaning up");
        if (sbx_sandbox_cleanup(d->cfg.run_dir, d->cfg.state_dir, d->cfg.cgroup_parent, de->d_name,
                                &err) < 0)
            sbxd_log(de->d_name, "cleanup: %s", err.message);
    }
    if (dh)
        closedir(dh);
}

int sbxd_registry_load(struct sbxd *d)
{
    char path[PATH_MAX];
    DIR *dh;
    struct dirent *de;

    snprintf(path, sizeof(path), "%s/apps.json", d->cfg.state_dir);
    d->apps = sbxd_read_json(path);
    if (!json_is_object(d->apps)) {
        json_decref(d->apps);
        d->apps = json_object();
    }
    snprintf(path, sizeof(path), "%s/records", d->cfg.state_dir);
    if (sbxd_mkdir_p(path, 0700) < 0)
        return -errno;
    dh = opendir(path);
    if (!dh)
        return -errno;
    while ((de = readdir(dh))) {
        struct sbxd_sandbox *sb;

        if (!sbxd_valid_id(de->d_name, "sb-"))
            continue;
        sb = load_one(d, de->d_name);
        if (!sb) {
            sbxd_log(de->d_name, "unreadable record: skipped");
            continue;
        }
        if (sb->pooled) {
            /* Made ahead by an earlier run and never claimed: nobody's.
             * sbxd_pool_start() shuts it down and removes its records. */
            if (strcmp(sb->state, "finished") && sbxd_monitor_attach(d, sb) < 0) {
                sbx_error err;
                if (sbx_sandbox_cleanup(d->cfg.run_dir, d->cfg.state_dir, d->cfg.cgroup_parent,
                                        sb->id, &err) < 0)
                    sbxd_log(sb->id, "cleanup: %s", err.message);
                sbxd_sandbox_finished(d, sb, -1, "error");
            }
            sb->next = d->pool;
            d->pool = sb;
            continue;
        }
        if (sbxd_sandbox_link(d, sb) < 0)
            sbxd_log(sb->id, "out of memory: not found by id until the next start");
        if (strcmp(sb->state, "finished")) {
            d->n_running++;
            /* The monitor may still be running it: reconnect.  If it is
             * gone, nothing records how it ended. */
            if (sbxd_monitor_attach(d, sb) < 0) {
                sbx_error err;
                sbxd_log(sb->id, "monitor gone while the daemon was down: cleaning up");
                if (sbx_sandbox_cleanup(d->cfg.run_dir, d->cfg.state_dir, d->cfg.cgroup_parent,
                                        sb->id, &err) < 0)
                    sbxd_log(sb->id, "cleanup: %s", err.message);
                sbxd_sandbox_finished(d, sb, -1, "error");
            }
        }
    }
    closedir(dh);
    clean_orphans(d);
    return 0;
}
