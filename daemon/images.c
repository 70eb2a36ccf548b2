/* images.c — the Images section of API.md: images built from recipes and
 * Dockerfiles, snapshots, listing, deleting and the layers' garbage.
 *
 * Two stores: the system's (cfg.image_store: sbx-mkimage's busybox and
 * debian-slim) and the daemon's own (STATE/images, STATE/layers), which
 * every image this daemon makes goes to; an image is looked up in the
 * daemon's store first, and each of its layers in whichever store has it,
 * so that built images stack on the system's layers.
 *
 *   STATE/images/ID/config.json   a ready image: {"image_id", "name",
 *                                 "layers" (names, top-most first), "env",
 *                                 "workdir", "entrypoint", "user",
 *                                 "created_at", "recipe" | "snapshot_of"}
 *   STATE/images/ID/build.json    while building or once failed:
 *                                 {"state", "error", "recipe", "created_at"}
 *   STATE/images/ID/build.log     what the steps printed, with a header each
 *   STATE/layers/l-KEY/           a layer (a tree, owned as the image's root
 *                                 would own it were it host root)
 *
 * A recipe's id is a hash of its base (the base image's layers and
 * settings, not its name) and its steps, so one recipe is built once; each
 * step that makes a layer is keyed by the chain of steps before it and
 * itself, so recipes sharing a prefix share its layers.  A build runs its
 * steps in order: env, user, entrypoint and cmd change the config only;
 * run, apt_install, pip_install, copy and workdir each run in a sandbox
 * (sandboxd-build, one process per step: builder.c) on the layers so far,
 * on the daemon's network, and the sandbox's writable layer becomes the
 * step's layer.  Requests for a recipe being built share that build.  A
 * build the daemon lost (it stopped meanwhile) is failed at the next
 * start.
 *
 * Layers no image uses are removed after a delete; an image is not deleted
 * while a sandbox that has not finished, or a build, uses it. */
#include "sandboxd.h"

#include "image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BUILD_STEP_TIMEOUT_S 3600
#define BUILD_MAX_STEPS      128
#define BUILD_LOG_TAIL       2048
#define LOG_MAX              (64ULL << 20) /* a build log is cut beyond this */

struct log_follower {
    struct log_follower *next;
    sbxd_req *req;
    sbxd_stream *stream;
    struct sbxd_build *build;
};

struct sbxd_build {
    struct sbxd_build *next;
    char id[32];
    json_t *recipe; /* {"base": NAME or spec, "steps": [..]} as asked */
    json_t *config; /* the image's config so far */
    json_t *used;   /* the base image's name, and layers made so far (GC keeps them) */
    size_t step, n_steps;
    unsigned char key[32]; /* the chain so far */
    int log_fd;
    uint64_t log_size;
    struct log_follower *followers;
    /* the step running */
    uv_process_t proc;
    uv_pipe_t in, out;
    bool running, out_open, proc_open;
    int64_t exit_status;
    char layer_tmp[PATH_MAX], layer_name[64];
    char step_id[32];
    struct sbxd *d;
    /* a base from a registry or an OCI archive, pulled before the steps */
    char *source; /* "docker://REF" or "oci-archive:FILE" */
    bool insecure, pulled;
    uv_work_t pull;
    char work[PATH_MAX]; /* the pull's scratch directory */
    char pull_why[512];
    int pull_r;
    json_t *pulled_config;
    double started_at;
    char *import_tar; /* an import's uploaded archive, removed at the end */
    sbxd_req *waiter; /* an import's request, answered at the end */
};

static struct sbxd_build *builds;

static void build_next(struct sbxd_build *b);

/* ---- stores ---- */

static void store_path(const char *store, const char *kind, const char *name, const char *rest,
                       char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s/%s%s%s", store, kind, name, rest ? "/" : "", rest ? rest : "");
}

/* An image's config.json, from the daemon's store or the system's. */
static json_t *config_load(struct sbxd *d, const char *name, bool *own)
{
    const char *stores[] = {d->cfg.state_dir, d->cfg.image_store};
    char path[PATH_MAX];

    if (!name || !sbxd_valid_name(name))
        return NULL;
    for (size_t i = 0; i < 2; i++) {
        json_t *c;
        store_path(stores[i], "images", name, "config.json", path, sizeof(path));
        if ((c = sbxd_read_json(path)) && json_is_object(c)) {
            if (own)
                *own = i == 0 || !strcmp(d->cfg.state_dir, d->cfg.image_store);
            return c;
        }
        json_decref(c);
    }
    return NULL;
}

/* A layer's directory: the daemon's store first. */
static bool layer_path(struct sbxd *d, const char *layer, char *buf, size_t size)
{
    const char *stores[] = {d->cfg.state_dir, d->cfg.image_store};
    struct stat st;

    for (size_t i = 0; i < 2; i++) {
        store_path(stores[i], "layers", layer, NULL, buf, size);
        if (stat(buf, &st) == 0 && S_ISDIR(st.st_mode))
            return true;
    }
    return false;
}

/* The id of `name` in the first of the image's layers (top-most first)
 * that has etc/FILE (passwd or group; a layer's whiteout of it is not
 * looked for); -1 when none has it. */
static long lookup_id(const struct sbx_image *img, const char *file, const char *name,
                      long *ret_gid)
{
    for (char **l = img->layers; l && *l; l++) {
        char path[PATH_MAX], line[1024];
        FILE *f;
        snprintf(path, sizeof(path), "%s/etc/%s", *l, file);
        if (!(f = fopen(path, "re")))
            continue;
        while (fgets(line, sizeof(line), f)) {
            char *save = NULL, *fname = strtok_r(line, ":", &save);
            char *pw = strtok_r(NULL, ":", &save), *id = strtok_r(NULL, ":", &save);
            char *gid = strtok_r(NULL, ":", &save);
            (void)pw;
            if (fname && id && !strcmp(fname, name)) {
                fclose(f);
                if (ret_gid)
                    *ret_gid = gid ? strtol(gid, NULL, 10) : 0;
                return strtol(id, NULL, 10);
            }
        }
        fclose(f);
        return -1;
    }
    return -1;
}

/* "NAME", "UID", "NAME:GROUP" or "UID:GID" → ids, from the image's own
 * passwd and group files (the user's group when none is named). */
static int resolve_user(struct sbx_image *img, sbx_error *err)
{
    char buf[128], *group, *end;
    long uid, gid = 0;

    snprintf(buf, sizeof(buf), "%s", img->user);
    if ((group = strchr(buf, ':')))
        *group++ = '\0';
    uid = strtol(buf, &end, 10);
    if (*end || end == buf)
        uid = lookup_id(img, "passwd", buf, &gid);
    if (uid < 0 || uid > 65535) {
        err->code = EINVAL;
        snprintf(err->message, sizeof(err->message), "image `%s`: no user `%s` in its /etc/passwd",
                 img->name, buf);
        return -EINVAL;
    }
    if (group) {
        gid = strtol(group, &end, 10);
        if (*end || end == group)
            gid = lookup_id(img, "group", group, NULL);
        if (gid < 0 || gid > 65535) {
            err->code = EINVAL;
            snprintf(err->message, sizeof(err->message),
                     "image `%s`: no group `%s` in its /etc/group", img->name, group);
            return -EINVAL;
        }
    }
    img->uid = (unsigned)uid;
    img->gid = (unsigned)gid;
    return 0;
}

int sbxd_image_load(struct sbxd *d, const char *name, struct sbx_image **ret, sbx_error *err)
{
    const char *const stores[] = {d->cfg.state_dir, d->cfg.image_store, NULL};
    int r = sbx_image_load_from(stores, name, ret, err);

    if (r == 0 && (*ret)->user && (r = resolve_user(*ret, err)) < 0) {
        sbx_image_free(*ret);
        *ret = NULL;
    }
    return r;
}

static json_t *build_state_load(struct sbxd *d, const char *id)
{
    char path[PATH_MAX];

    store_path(d->cfg.state_dir, "images", id, "build.json", path, sizeof(path));
    return sbxd_read_json(path);
}

const char *sbxd_image_unready(struct sbxd *d, const char *name)
{
    json_t *b;
    const char *why = NULL;

    for (struct sbxd_build *x = builds; x; x = x->next)
        if (!strcmp(x->id, name))
            return "is still building";
    if ((b = build_state_load(d, name))) {
        why = "failed to build (GET /v1/images/ID says why)";
        json_decref(b);
    }
    return why;
}

/* ---- hashing ---- */

static void sha256(const void *data, size_t len, unsigned char out[32])
{
    gnutls_hash_fast(GNUTLS_DIG_SHA256, data, len, out);
}

/* H(key || json): the next link of a chain. */
static void chain(unsigned char key[32], json_t *j)
{
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    size_t n = text ? strlen(text) : 0;
    unsigned char *buf = malloc(32 + n);

    if (buf) {
        memcpy(buf, key, 32);
        memcpy(buf + 32, text, n);
        sha256(buf, 32 + n, key);
    }
    free(buf);
    free(text);
}

static void hex(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

/* "im-" and 22 base62 digits of the key. */
static void image_id_of(const unsigned char key[32], char *out, size_t size)
{
    static const char b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    unsigned char k[32];

    memcpy(k, key, 32);
    snprintf(out, size, "im-");
    /* Repeated division of the 256-bit number by 62. */
    for (size_t i = 0; i < 22 && 3 + i + 1 < size; i++) {
        unsigned rem = 0;
        for (size_t j = 0; j < 32; j++) {
            unsigned cur = rem * 256 + k[j];
            k[j] = (unsigned char)(cur / 62);
            rem = cur % 62;
        }
        out[3 + i] = b62[rem];
        out[3 + i + 1] = '\0';
    }
}

/* A signature of a host tree for a copy step's key: every entry's path,
 * type, size, mode and mtime, in walk order.  A changed source is a new
 * layer. */
static gnutls_hash_hd_t tree_hash;
static size_t tree_entries;

static int tree_visit(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    char line[PATH_MAX + 128];
    int n;

    (void)f;
    n = snprintf(line, sizeof(line), "%s %d %o %lld %lld.%09ld\n", path, flag, st->st_mode,
                 (long long)st->st_size, (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
    gnutls_hash(tree_hash, line, (size_t)n);
    return ++tree_entries > 1000000 ? 1 : 0;
}

static void tree_signature(const char *path, char out[65])
{
    unsigned char d[32];

    tree_entries = 0;
    if (gnutls_hash_init(&tree_hash, GNUTLS_DIG_SHA256) < 0) {
        snprintf(out, 65, "none");
        return;
    }
    (void)nftw(path, tree_visit, 32, FTW_PHYS | FTW_MOUNT);
    gnutls_hash_deinit(tree_hash, d);
    hex(d, 32, out);
}

/* ---- recipes ---- */

#define BAD(...)                                                                                   \
    do {                                                                                           \
        sbxd_reply_error(req, 400, "invalid_argument", __VA_ARGS__);                               \
        return false;                                                                              \
    } while (0)

static bool is_strv(json_t *a, bool nonempty)
{
    size_t i;
    json_t *x;

    if (!json_is_array(a) || (nonempty && json_array_size(a) == 0) || json_array_size(a) > 4096)
        return false;
    json_array_foreach(a, i, x) if (!json_is_string(x) || !json_string_length(x)) return false;
    return true;
}

static bool valid_var(const char *k)
{
    if (!*k || (*k >= '0' && *k <= '9'))
        return false;
    for (; *k; k++)
        if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || (*k >= '0' && *k <= '9') ||
              *k == '_'))
            return false;
    return true;
}

/* A package name for apt or pip: no shell in it, no option. */
static bool valid_package(const char *p)
{
    if (!*p || *p == '-' || strlen(p) > 256)
        return false;
    for (; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr(".+-_:=<>!~,[]*@/", *p)))
            return false;
    return true;
}

static bool valid_url(const char *u)
{
    if (!u || (strncmp(u, "http://", 7) && strncmp(u, "https://", 8)) || strlen(u) > 2048)
        return false;
    for (; *u; u++)
        if ((unsigned char)*u <= ' ' || *u == '\'' || *u == '"' || *u == '\\')
            return false;
    return true;
}

static bool abs_path(const char *p)
{
    return p && p[0] == '/' && strlen(p) < 4096 && !strstr(p, "/../") &&
           strcmp(p + (strlen(p) >= 3 ? strlen(p) - 3 : 0), "/..");
}

/* One step, checked; 400 naming it on the first problem. */
static bool step_ok(struct sbxd *d, sbxd_req *req, json_t *s, size_t i)
{
    json_t *v;
    const char *k, *kind = NULL;
    size_t n = 0;

    if (!json_is_object(s))
        BAD("steps[%zu]: each step is an object, e.g. {\"run\": \"...\"}", i);
    json_object_foreach(s, k, v)
    {
        if (!strcmp(k, "run") || !strcmp(k, "apt_install") || !strcmp(k, "pip_install") ||
            !strcmp(k, "copy") || !strcmp(k, "env") || !strcmp(k, "workdir") ||
            !strcmp(k, "user") || !strcmp(k, "entrypoint") || !strcmp(k, "cmd")) {
            kind = k;
            n++;
        } else if (strcmp(k, "index_url") && strcmp(k, "extra_index_url")) {
            BAD("steps[%zu]: unknown member `%.32s`", i, k);
        }
    }
    if (n != 1)
        BAD("steps[%zu]: one of run, apt_install, pip_install, copy, env, workdir, user, "
            "entrypoint, cmd",
            i);
    if ((json_object_get(s, "index_url") || json_object_get(s, "extra_index_url")) &&
        strcmp(kind, "pip_install"))
        BAD("steps[%zu]: index_url and extra_index_url go with pip_install", i);
    v = json_object_get(s, kind);
    if (!strcmp(kind, "run")) {
        if (!(json_is_string(v) && json_string_length(v)) && !is_strv(v, true))
            BAD("steps[%zu]: run is a shell command or an argv", i);
    } else if (!strcmp(kind, "apt_install") || !strcmp(kind, "pip_install")) {
        size_t j;
        json_t *p;
        if (!is_strv(v, true))
            BAD("steps[%zu]: %s is a non-empty array of package names", i, kind);
        json_array_foreach(v, j, p) if (!valid_package(json_string_value(p)))
            BAD("steps[%zu]: `%.64s` is not a package name", i, json_string_value(p));
        for (int u = 0; u < 2; u++) {
            json_t *url = json_object_get(s, u ? "extra_index_url" : "index_url");
            if (url && !valid_url(json_string_value(url)))
                BAD("steps[%zu]: %s must be an http(s) URL", i,
                    u ? "extra_index_url" : "index_url");
        }
    } else if (!strcmp(kind, "copy")) {
        const char *src = json_string_value(json_object_get(v, "src"));
        const char *dst = json_string_value(json_object_get(v, "dst"));
        json_t *mounts;
        char why[512];
        bool ok;
        if (!json_is_object(v) || !abs_path(src) || !abs_path(dst) || json_object_size(v) != 2)
            BAD("steps[%zu]: copy is {\"src\": HOST_PATH, \"dst\": PATH}, both absolute", i);
        /* The host path must be one the config allows (host_mounts). */
        mounts = json_array();
        ok = sbxd_host_mount(d, src, "/tmp/.sbx-copy", true, mounts, why, sizeof(why));
        json_decref(mounts);
        if (!ok)
            BAD("steps[%zu]: copy: %s", i, why);
    } else if (!strcmp(kind, "env")) {
        json_t *x;
        if (!json_is_object(v) || json_object_size(v) == 0)
            BAD("steps[%zu]: env is an object of strings", i);
        json_object_foreach(v, k, x) if (!valid_var(k) || !json_is_string(x))
            BAD("steps[%zu]: env is an object of strings with variable names", i);
    } else if (!strcmp(kind, "workdir")) {
        if (!abs_path(json_string_value(v)))
            BAD("steps[%zu]: workdir is an absolute path", i);
    } else if (!strcmp(kind, "user")) {
        const char *u = json_string_value(v);
        if (!u || !*u || strlen(u) > 64 || strpbrk(u, " \t\n/"))
            BAD("steps[%zu]: user is NAME, UID or UID:GID", i);
    } else if (!is_strv(v, true)) {
        BAD("steps[%zu]: %s is an argv", i, kind);
    }
    return true;
}

#undef BAD

/* The base's identity for the recipe's key: its layers and settings. */
static json_t *base_identity(json_t *config)
{
    return json_pack(
        "{s:O,s:O?,s:O?,s:O?,s:O?}", "layers", json_object_get(config, "layers"), "env",
        json_object_get(config, "env"), "workdir", json_object_get(config, "workdir"), "entrypoint",
        json_object_get(config, "entrypoint"), "user", json_object_get(config, "user"));
}

/* A step's key material: the step, and a copy's source as it is now. */
static json_t *step_identity(struct sbxd *d, json_t *step)
{
    json_t *copy = json_object_get(step, "copy");

    if (copy) {
        char sig[65];
        (void)d;
        tree_signature(json_string_value(json_object_get(copy, "src")), sig);
        return json_pack("{s:O,s:s}", "step", step, "source", sig);
    }
    return json_incref(step);
}

/* ---- the build log ---- */

static void log_append(struct sbxd_build *b, const void *data, size_t len)
{
    if (b->log_size + len > LOG_MAX) {
        static const char cut[] = "\n[the build log is cut here: it passed 64 MiB]\n";
        if (b->log_size >= LOG_MAX)
            return;
        data = cut;
        len = sizeof(cut) - 1;
    }
    if (b->log_fd >= 0)
        (void)sbxd_write_all(b->log_fd, data, len);
    b->log_size += len;
    for (struct log_follower *f = b->followers; f; f = f->next)
        sbxd_stream_write(f->stream, data, len);
}

__attribute__((format(printf, 2, 3))) static void log_line(struct sbxd_build *b, const char *fmt,
                                                           ...)
{
    char buf[4096];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(buf) - 1)
        n = (int)sizeof(buf) - 2;
    buf[n++] = '\n';
    log_append(b, buf, (size_t)n);
}

static void follower_abort(sbxd_req *req, void *data)
{
    struct log_follower *f = data, **pp;

    (void)req;
    if (f->build) {
        for (pp = &f->build->followers; *pp && *pp != f; pp = &(*pp)->next)
            ;
        if (*pp)
            *pp = f->next;
    }
    free(f);
}

static void followers_end(struct sbxd_build *b)
{
    while (b->followers) {
        struct log_follower *f = b->followers;
        b->followers = f->next;
        sbxd_req_on_abort(f->req, NULL, NULL);
        sbxd_stream_end(f->stream);
        free(f);
    }
}

/* The last BUILD_LOG_TAIL bytes of the log, for an error. */
static char *log_tail(struct sbxd *d, const char *id)
{
    char path[PATH_MAX], *buf;
    ssize_t n;
    off_t size;
    int fd;

    store_path(d->cfg.state_dir, "images", id, "build.log", path, sizeof(path));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return strdup("");
    size = lseek(fd, 0, SEEK_END);
    buf = malloc(BUILD_LOG_TAIL + 1);
    n = buf ? pread(fd, buf, BUILD_LOG_TAIL, size > BUILD_LOG_TAIL ? size - BUILD_LOG_TAIL : 0)
            : -1;
    close(fd);
    if (n < 0) {
        free(buf);
        return strdup("");
    }
    buf[n] = '\0';
    return buf;
}

/* ---- running a build ---- */

static void build_free(struct sbxd_build *b)
{
    struct sbxd_build **pp;

    for (pp = &builds; *pp && *pp != b; pp = &(*pp)->next)
        ;
    if (*pp)
        *pp = b->next;
    followers_end(b);
    if (b->log_fd >= 0)
        close(b->log_fd);
    if (b->import_tar)
        unlink(b->import_tar);
    free(b->import_tar);
    free(b->source);
    json_decref(b->pulled_config);
    json_decref(b->recipe);
    json_decref(b->config);
    json_decref(b->used);
    free(b);
}

static void build_failed(struct sbxd_build *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void build_failed(struct sbxd_build *b, const char *fmt, ...)
{
    char why[1024], path[PATH_MAX], *tail;
    json_t *state;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    log_line(b, "==> failed: %s", why);
    tail = log_tail(b->d, b->id);
    state = json_pack("{s:s,s:s,s:s,s:O,s:f,s:f}", "state", "failed", "error", why, "log_tail",
                      tail ? tail : "", "recipe", b->recipe, "started_at", b->started_at,
                      "finished_at", sbxd_now());
    store_path(b->d->cfg.state_dir, "images", b->id, "build.json", path, sizeof(path));
    (void)sbxd_write_json(path, state, true);
    json_decref(state);
    free(tail);
    sbxd_log(NULL, "image %s: build failed: %s", b->id, why);
    if (b->waiter) {
        sbxd_req_on_abort(b->waiter, NULL, NULL);
        sbxd_reply_error(b->waiter, 400, "invalid_argument", "image `%s`: %s", b->id, why);
    }
    build_free(b);
}

static void build_done(struct sbxd_build *b)
{
    char path[PATH_MAX];
    int r;

    json_object_set_new(b->config, "created_at", json_real(sbxd_now()));
    store_path(b->d->cfg.state_dir, "images", b->id, "config.json", path, sizeof(path));
    r = sbxd_write_json(path, b->config, true);
    if (r < 0) {
        build_failed(b, "cannot write the image's config: %s", strerror(-r));
        return;
    }
    store_path(b->d->cfg.state_dir, "images", b->id, "build.json", path, sizeof(path));
    (void)unlink(path);
    log_line(b, "==> done: %s", b->id);
    sbxd_log(NULL, "image %s: built (%zu layers)", b->id,
             json_array_size(json_object_get(b->config, "layers")));
    if (b->waiter) {
        sbxd_req_on_abort(b->waiter, NULL, NULL);
        sbxd_reply_json(b->waiter, 201,
                        json_pack("{s:s,s:s}", "image_id", b->id, "state", "ready"));
    }
    build_free(b);
}

static void step_closed(uv_handle_t *h)
{
    struct sbxd_build *b = h->data;

    if (h == (uv_handle_t *)&b->proc)
        b->proc_open = false;
    else if (h == (uv_handle_t *)&b->out)
        b->out_open = false;
    if (b->proc_open || b->out_open || b->running)
        return;
    /* Both the process and its output are done: the step's end. */
    if (b->exit_status != 0) {
        char *desc =
            json_dumps(json_array_get(json_object_get(b->recipe, "steps"), b->step), JSON_COMPACT);
        (void)sbx_rm_rf(b->layer_tmp, NULL);
        build_failed(b, "step %zu %s exited with %lld", b->step + 1, desc ? desc : "",
                     (long long)b->exit_status);
        free(desc);
        return;
    }
    {
        char final[PATH_MAX];
        store_path(b->d->cfg.state_dir, "layers", b->layer_name, NULL, final, sizeof(final));
        if (rename(b->layer_tmp, final) < 0 && errno != EEXIST && errno != ENOTEMPTY) {
            build_failed(b, "cannot keep the layer of step %zu: %s", b->step + 1, strerror(errno));
            return;
        }
        (void)sbx_rm_rf(b->layer_tmp, NULL); /* (another build made the same one first) */
    }
    json_array_insert_new(json_object_get(b->config, "layers"), 0, json_string(b->layer_name));
    b->step++;
    build_next(b);
}

static void step_exited(uv_process_t *p, int64_t status, int sig)
{
    struct sbxd_build *b = p->data;

    b->exit_status = sig ? 128 + sig : status;
    b->running = false;
    uv_close((uv_handle_t *)p, step_closed);
}

static void step_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char space[65536];

    (void)h;
    (void)suggested;
    buf->base = space;
    buf->len = sizeof(space);
}

static void step_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct sbxd_build *b = s->data;

    if (n > 0)
        log_append(b, buf->base, (size_t)n);
    else if (n < 0)
        uv_close((uv_handle_t *)s, step_closed);
}

static void spec_written(uv_write_t *w, int status)
{
    struct sbxd_build *b = w->data;

    (void)status;
    free(w);
    uv_close((uv_handle_t *)&b->in, NULL);
}

/* A shell word: 'x', with embedded quotes closed and reopened. */
static void shell_quote(json_t *out_parts, const char *s)
{
    size_t n = strlen(s);
    char *q = malloc(4 * n + 3), *o = q;

    if (!q)
        return;
    *o++ = '\'';
    for (; *s; s++) {
        if (*s == '\'') {
            memcpy(o, "'\\''", 4);
            o += 4;
        } else {
            *o++ = *s;
        }
    }
    *o++ = '\'';
    *o = '\0';
    json_array_append_new(out_parts, json_string(q));
    free(q);
}

static char *joined(json_t *parts)
{
    size_t n = 0, i;
    json_t *p;
    char *s, *o;

    json_array_foreach(parts, i, p) n += json_string_length(p) + 1;
    s = o = malloc(n + 1);
    if (!s)
        return NULL;
    json_array_foreach(parts, i, p)
    {
        memcpy(o, json_string_value(p), json_string_length(p));
        o += json_string_length(p);
        *o++ = ' ';
    }
    *o = '\0';
    return s;
}

/* The argv a layer step runs, and its binds. */
static json_t *step_argv(struct sbxd_build *b, json_t *step, json_t *mounts)
{
    json_t *v, *v2, *parts;
    char *cmd;

    if ((v = json_object_get(step, "run")))
        return json_is_string(v) ? json_pack("[s,s,s]", "/bin/sh", "-c", json_string_value(v))
                                 : json_incref(v);
    if ((v = json_object_get(step, "workdir")))
        return json_pack("[s,s,s]", "mkdir", "-p", json_string_value(v));
    parts = json_array();
    if ((v = json_object_get(step, "apt_install"))) {
        size_t i;
        json_t *p;
        json_array_append_new(parts, json_string("set -e; export DEBIAN_FRONTEND=noninteractive; "
                                                 "apt-get update -q; apt-get install -y -q "
                                                 "--no-install-recommends"));
        json_array_foreach(v, i, p) shell_quote(parts, json_string_value(p));
        json_array_append_new(parts, json_string("; apt-get clean; rm -rf /var/lib/apt/lists/*"));
    } else if ((v = json_object_get(step, "pip_install"))) {
        size_t i;
        json_t *p;
        /* Debian's python is "externally managed" (PEP 668): the image is
         * the environment here, as in Modal's. */
        json_array_append_new(parts, json_string("set -e; python3 -m pip install --no-cache-dir "
                                                 "--break-system-packages "
                                                 "--root-user-action=ignore"));
        for (int u = 0; u < 2; u++) {
            const char *url =
                json_string_value(json_object_get(step, u ? "extra_index_url" : "index_url"));
            if (!url)
                continue;
            json_array_append_new(parts, json_string(u ? "--extra-index-url" : "--index-url"));
            shell_quote(parts, url);
            /* An http:// index the recipe names is one it trusts (pip
             * ignores it otherwise). */
            if (!strncmp(url, "http://", 7)) {
                char host[256];
                snprintf(host, sizeof(host), "%.*s", (int)strcspn(url + 7, ":/"), url + 7);
                json_array_append_new(parts, json_string("--trusted-host"));
                shell_quote(parts, host);
            }
        }
        json_array_foreach(v, i, p) shell_quote(parts, json_string_value(p));
    } else if ((v = json_object_get(step, "copy"))) {
        char why[512];
        /* Checked at the request; if it went since, the copy fails. */
        if (!sbxd_host_mount(b->d, json_string_value(json_object_get(v, "src")), "/tmp/.sbx-copy",
                             true, mounts, why, sizeof(why)))
            log_line(b, "    %s", why);
        /* (dst=VALUE: one word, no space after `=`) */
        json_array_append_new(parts, json_string("set -e; dst=$1;"));
        json_array_append_new(
            parts,
            json_string("if [ -d /tmp/.sbx-copy ]; then mkdir -p \"$dst\"; cp -a /tmp/.sbx-copy/. "
                        "\"$dst\"/; else case \"$dst\" in */) mkdir -p \"$dst\";; *) mkdir -p "
                        "\"$(dirname \"$dst\")\";; esac; cp -a /tmp/.sbx-copy \"$dst\"; fi"));
    }
    cmd = joined(parts);
    json_decref(parts);
    v = json_pack("[s,s,s]", "/bin/sh", "-c", cmd ? cmd : "false");
    free(cmd);
    /* A copy's destination comes as $1, not through the shell's parser. */
    if ((v2 = json_object_get(step, "copy"))) {
        json_array_append_new(v, json_string("sh"));
        json_array_append(v, json_object_get(v2, "dst"));
    }
    return v;
}

static const char *step_kind(json_t *step)
{
    static const char *const kinds[] = {"run",  "apt_install", "pip_install", "copy", "env",
                                        "user", "workdir",     "entrypoint",  "cmd"};

    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (json_object_get(step, kinds[i]))
            return kinds[i];
    return "?";
}

/* env ["K=V"..] with K set to v (replaced where it is). */
static void env_set(json_t *env, const char *k, const char *v)
{
    size_t kl = strlen(k), i;
    json_t *x;
    char *kv;

    if (asprintf(&kv, "%s=%s", k, v) < 0)
        return;
    json_array_foreach(env, i, x)
    {
        const char *s = json_string_value(x);
        if (s && !strncmp(s, k, kl) && s[kl] == '=') {
            json_array_set_new(env, i, json_string(kv));
            free(kv);
            return;
        }
    }
    json_array_append_new(env, json_string(kv));
    free(kv);
}

static int step_start(struct sbxd_build *b, json_t *step)
{
    struct sbxd *d = b->d;
    json_t *mounts = json_array(), *argv = step_argv(b, step, mounts), *layers = json_array();
    json_t *spec, *l;
    char builder[PATH_MAX], *slash, *text;
    const char *args[2];
    uv_process_options_t o = {0};
    uv_stdio_container_t stdio[3];
    uv_write_t *w;
    uv_buf_t buf;
    size_t i;
    int r;

    json_array_foreach(json_object_get(b->config, "layers"), i, l)
    {
        char path[PATH_MAX];
        if (!layer_path(d, json_string_value(l), path, sizeof(path))) {
            json_decref(mounts);
            json_decref(argv);
            json_decref(layers);
            return -ENOENT;
        }
        json_array_append_new(layers, json_string(path));
    }
    sbxd_new_id("bd-", b->step_id, sizeof(b->step_id));
    spec = json_pack(
        "{s:s,s:s,s:s,s:s,s:o,s:O,s:o,s:o,s:o,s:i,s:I,s:I,s:s}", "id", b->step_id, "run_dir",
        d->cfg.run_dir, "state_dir", d->cfg.state_dir, "cgroup_parent", d->cfg.cgroup_parent,
        "layers", layers, "env", json_object_get(b->config, "env"), "workdir",
        /* (a workdir step makes it, from /) */
        json_object_get(step, "workdir") ? json_string("/")
                                         : json_incref(json_object_get(b->config, "workdir")),
        "argv", argv, "mounts", mounts, "timeout_s", BUILD_STEP_TIMEOUT_S, "memory_bytes",
        (json_int_t)d->cfg.default_memory_bytes, "pids_max", (json_int_t)d->cfg.default_pids_max,
        "layer", b->layer_tmp);
    if (spec && d->cfg.network) {
        json_object_set_new(
            spec, "network",
            json_pack("{s:s,s:s}", "bridge", d->cfg.bridge, "subnet", d->cfg.subnet));
        json_object_set_new(spec, "resolv_conf", json_string(d->resolv_conf));
    }
    if (spec && json_string_value(json_object_get(b->config, "user")) &&
        !json_object_get(step, "workdir")) {
        /* After a USER, steps run as that user (as Docker's RUN), found in
         * the layers so far. */
        size_t n = json_array_size(json_object_get(spec, "layers"));
        char **paths = calloc(n + 1, sizeof(char *));
        struct sbx_image tmp = {.name = b->id,
                                .layers = paths,
                                .user =
                                    (char *)json_string_value(json_object_get(b->config, "user"))};
        sbx_error err = {0};
        for (i = 0; paths && i < n; i++)
            paths[i] =
                (char *)json_string_value(json_array_get(json_object_get(spec, "layers"), i));
        r = paths ? resolve_user(&tmp, &err) : -ENOMEM;
        free(paths);
        if (r < 0) {
            log_line(b, "    %s", err.message);
            json_decref(spec);
            return r;
        }
        json_object_set_new(spec, "uid", json_integer(tmp.uid));
        json_object_set_new(spec, "gid", json_integer(tmp.gid));
    }
    text = spec ? json_dumps(spec, JSON_COMPACT) : NULL;
    json_decref(spec);
    if (!text)
        return -ENOMEM;
    /* sandboxd-build lives beside sandboxd-monitor. */
    snprintf(builder, sizeof(builder), "%s", d->cfg.monitor_path);
    slash = strrchr(builder, '/');
    snprintf(slash ? slash + 1 : builder,
             sizeof(builder) - (size_t)(slash ? slash + 1 - builder : 0), "sandboxd-build");
    args[0] = builder;
    args[1] = NULL;
    uv_pipe_init(d->loop, &b->in, 0);
    uv_pipe_init(d->loop, &b->out, 0);
    b->in.data = b->out.data = b->proc.data = b;
    stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    stdio[0].data.stream = (uv_stream_t *)&b->in;
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&b->out;
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = 2;
    o.file = builder;
    o.args = (char **)args;
    o.exit_cb = step_exited;
    o.stdio = stdio;
    o.stdio_count = 3;
    b->proc_open = b->out_open = true;
    r = uv_spawn(d->loop, &b->proc, &o);
    if (r < 0) {
        /* The handles go first; step_closed() then fails the step. */
        free(text);
        log_line(b, "    cannot start %s: %s", builder, uv_strerror(r));
        b->exit_status = 125;
        uv_close((uv_handle_t *)&b->in, NULL);
        uv_close((uv_handle_t *)&b->out, step_closed);
        uv_close((uv_handle_t *)&b->proc, step_closed);
        return 0;
    }
    b->running = true;
    uv_read_start((uv_stream_t *)&b->out, step_alloc, step_read);
    w = malloc(sizeof(*w));
    buf = uv_buf_init(text, (unsigned)strlen(text));
    if (w) {
        w->data = b;
        /* (uv_write copies nothing: text must live until written) */
        if (uv_write(w, (uv_stream_t *)&b->in, &buf, 1, spec_written) < 0) {
            free(w);
            uv_close((uv_handle_t *)&b->in, NULL);
        }
    } else {
        uv_close((uv_handle_t *)&b->in, NULL);
    }
    /* The spec is small: the pipe's buffer takes it at once. */
    free(text);
    return 0;
}

static void pull_work(uv_work_t *w)
{
    struct sbxd_build *b = w->data;
    char rootfs[PATH_MAX], logpath[PATH_MAX];
    int log_fd;

    snprintf(rootfs, sizeof(rootfs), "%s/rootfs", b->work);
    snprintf(logpath, sizeof(logpath), "%s/tools.log", b->work);
    log_fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    b->pull_r = sbxd_oci_unpack(b->source, b->insecure, b->work, rootfs, &b->pulled_config, log_fd,
                                b->pull_why, sizeof(b->pull_why));
    if (log_fd >= 0)
        close(log_fd);
}

static void pull_done(uv_work_t *w, int status)
{
    struct sbxd_build *b = w->data;
    char path[PATH_MAX], keyhex[65], final[PATH_MAX];
    const char *k;
    json_t *v;
    int fd;

    /* What the tools said, into the log. */
    snprintf(path, sizeof(path), "%s/tools.log", b->work);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
        char buf[65536];
        ssize_t n;
        while ((n = read(fd, buf, sizeof(buf))) > 0)
            log_append(b, buf, (size_t)n);
        close(fd);
    }
    if (status < 0 || b->pull_r < 0) {
        (void)sbx_rm_rf(b->work, NULL);
        build_failed(b, "pull %s: %s", b->source, status < 0 ? "cancelled" : b->pull_why);
        return;
    }
    hex(b->key, 20, keyhex);
    snprintf(b->layer_name, sizeof(b->layer_name), "l-%s", keyhex);
    store_path(b->d->cfg.state_dir, "layers", b->layer_name, NULL, final, sizeof(final));
    snprintf(path, sizeof(path), "%s/rootfs", b->work);
    (void)sbx_rm_rf(final, NULL);
    if (rename(path, final) < 0) {
        build_failed(b, "keep the pulled layer: %s", strerror(errno));
        (void)sbx_rm_rf(b->work, NULL);
        return;
    }
    (void)sbx_rm_rf(b->work, NULL);
    json_array_append_new(b->used, json_string(b->layer_name));
    json_object_set_new(b->config, "layers", json_pack("[s]", b->layer_name));
    json_object_foreach(b->pulled_config, k, v) json_object_set(b->config, k, v);
    b->pulled = true;
    log_line(b, "    (pulled into %s)", b->layer_name);
    build_next(b);
}

static void build_next(struct sbxd_build *b)
{
    json_t *steps = json_object_get(b->recipe, "steps");

    if (b->source && !b->pulled) {
        /* The base first: pulled (or read from the archive) and unpacked
         * on the thread pool. */
        char rnd[32];
        log_line(b, "==> [base] %s", b->source);
        sbxd_new_id("", rnd, sizeof(rnd));
        snprintf(b->work, sizeof(b->work), "%s/layers/.tmp-pull-%s", b->d->cfg.state_dir, rnd);
        if (sbxd_mkdir_p(b->work, 0700) < 0) {
            build_failed(b, "cannot make %s", b->work);
            return;
        }
        b->pull.data = b;
        if (uv_queue_work(b->d->loop, &b->pull, pull_work, pull_done) < 0)
            build_failed(b, "cannot queue the pull");
        return;
    }

    while (b->step < b->n_steps) {
        json_t *step = json_array_get(steps, b->step), *v, *id;
        const char *kind = step_kind(step);
        char *desc = json_dumps(json_object_get(step, kind), JSON_COMPACT | JSON_ENCODE_ANY);
        char keyhex[65];
        int r;

        log_line(b, "==> [%zu/%zu] %s %s", b->step + 1, b->n_steps, kind, desc ? desc : "");
        free(desc);
        id = step_identity(b->d, step);
        chain(b->key, id);
        json_decref(id);
        if ((v = json_object_get(step, "env"))) {
            const char *k;
            json_t *x;
            json_object_foreach(v, k, x)
                env_set(json_object_get(b->config, "env"), k, json_string_value(x));
            b->step++;
            continue;
        }
        if ((v = json_object_get(step, "user"))) {
            json_object_set(b->config, "user", v);
            b->step++;
            continue;
        }
        if ((v = json_object_get(step, "entrypoint")) || (v = json_object_get(step, "cmd"))) {
            /* CMD after an ENTRYPOINT: its arguments. */
            json_t *ep = json_object_get(b->config, "entrypoint");
            if (json_object_get(step, "cmd") && json_is_array(ep) &&
                json_is_true(json_object_get(b->config, "entrypoint_set"))) {
                json_t *all = json_copy(ep);
                json_array_extend(all, v);
                json_object_set_new(b->config, "entrypoint", all);
            } else {
                json_object_set(b->config, "entrypoint", v);
                if (json_object_get(step, "entrypoint"))
                    json_object_set_new(b->config, "entrypoint_set", json_true());
            }
            b->step++;
            continue;
        }
        if ((v = json_object_get(step, "workdir")))
            json_object_set(b->config, "workdir", v);
        hex(b->key, 20, keyhex);
        snprintf(b->layer_name, sizeof(b->layer_name), "l-%s", keyhex);
        json_array_append_new(b->used, json_string(b->layer_name));
        {
            char path[PATH_MAX];
            if (layer_path(b->d, b->layer_name, path, sizeof(path))) {
                log_line(b, "    (cached: %s)", b->layer_name);
                json_array_insert_new(json_object_get(b->config, "layers"), 0,
                                      json_string(b->layer_name));
                b->step++;
                continue;
            }
        }
        store_path(b->d->cfg.state_dir, "layers", ".tmp-", NULL, b->layer_tmp,
                   sizeof(b->layer_tmp));
        snprintf(b->layer_tmp + strlen(b->layer_tmp), sizeof(b->layer_tmp) - strlen(b->layer_tmp),
                 "%s-%d", keyhex, (int)(random() % 100000));
        (void)sbx_rm_rf(b->layer_tmp, NULL);
        r = step_start(b, step);
        if (r < 0) {
            build_failed(b, "cannot start step %zu: %s", b->step + 1, strerror(-r));
            return;
        }
        return; /* step_closed() goes on */
    }
    json_object_del(b->config, "entrypoint_set");
    build_done(b);
}

/* ---- the API ---- */

/* HOST[:PORT]/NAME[:TAG] or NAME@sha256:HEX: what skopeo's docker://
 * takes, with nothing a tool could read as an option or a path. */
static bool valid_registry_ref(const char *ref)
{
    size_t n = strlen(ref);

    if (n < 3 || n > 512 || !strchr(ref, '/') || ref[0] == '-' || ref[0] == '/' ||
        strstr(ref, "..") || strstr(ref, "//"))
        return false;
    for (; *ref; ref++)
        if (!((*ref >= 'a' && *ref <= 'z') || (*ref >= 'A' && *ref <= 'Z') ||
              (*ref >= '0' && *ref <= '9') || strchr("._-:/@", *ref)))
            return false;
    return true;
}

/* Whether a registry is on loopback, where TLS is not asked for (as
 * Docker does for 127.0.0.0/8). */
static bool loopback_registry(const char *ref)
{
    return !strncmp(ref, "127.", 4) || !strncmp(ref, "localhost:", 10) ||
           !strncmp(ref, "localhost/", 10) || !strncmp(ref, "[::1]", 5);
}

/* The recipe of a POST /v1/images: {"base", "steps"} with a Dockerfile's
 * steps after the request's own; replies 4xx and returns NULL. */
static json_t *recipe_of(struct sbxd *d, sbxd_req *req, json_t *body, json_t **ret_base_config)
{
    json_t *base = json_object_get(body, "base"), *steps = json_object_get(body, "steps");
    json_t *df = json_object_get(body, "dockerfile"), *all = json_array(), *config, *s;
    const char *k;
    json_t *x;
    size_t i;

    json_object_foreach(body, k, x)
    {
        if (strcmp(k, "base") && strcmp(k, "steps") && strcmp(k, "dockerfile")) {
            sbxd_reply_error(req, 400, "invalid_argument", "unknown field `%.64s`", k);
            goto fail;
        }
    }
    if (steps && !json_is_null(steps)) {
        if (!json_is_array(steps)) {
            sbxd_reply_error(req, 400, "invalid_argument", "field `steps` must be an array");
            goto fail;
        }
        json_array_extend(all, steps);
    }
    if (df && !json_is_null(df)) {
        char why[256];
        json_t *parsed;
        if (!json_is_string(df)) {
            sbxd_reply_error(req, 400, "invalid_argument", "field `dockerfile` must be a string");
            goto fail;
        }
        if (!(parsed = sbxd_dockerfile_parse(json_string_value(df), why, sizeof(why)))) {
            sbxd_reply_error(req, 400, "invalid_argument", "field `dockerfile`: %s", why);
            goto fail;
        }
        if (json_object_get(parsed, "base")) {
            if (base && !json_is_null(base) && !json_equal(base, json_object_get(parsed, "base"))) {
                json_decref(parsed);
                sbxd_reply_error(req, 400, "invalid_argument",
                                 "`base` and the Dockerfile's FROM differ");
                goto fail;
            }
            base = json_object_get(parsed, "base");
        }
        json_array_extend(all, json_object_get(parsed, "steps"));
        json_incref(base);
        json_decref(parsed);
    } else {
        json_incref(base);
    }
    if (!base || json_is_null(base))
        base = json_string("debian-slim"); /* (Modal's default image) */
    if (json_is_object(base)) {
        const char *ref = json_string_value(json_object_get(base, "registry"));
        const char *arch = json_string_value(json_object_get(base, "oci_archive"));
        char why[512];
        if (json_object_size(base) != 1 || (!ref && !arch)) {
            sbxd_reply_error(req, 400, "invalid_argument",
                             "field `base`: {\"registry\": \"HOST[:PORT]/NAME[:TAG]\"} or "
                             "{\"oci_archive\": \"/host/path.tar\"}");
            json_decref(base);
            goto fail;
        }
        if (ref && !valid_registry_ref(ref)) {
            sbxd_reply_error(req, 400, "invalid_argument",
                             "field `base`: `%.256s` is not HOST[:PORT]/NAME[:TAG|@DIGEST]", ref);
            json_decref(base);
            goto fail;
        }
        if (arch) {
            /* A host file: only one the config allows (host_mounts). */
            json_t *m = json_array();
            bool ok = sbxd_host_mount(d, arch, "/x", true, m, why, sizeof(why));
            json_decref(m);
            if (!ok) {
                sbxd_reply_error(req, 400, "invalid_argument", "field `base`: %s", why);
                json_decref(base);
                goto fail;
            }
        }
        config = NULL;
        goto steps;
    }
    if (!json_is_string(base)) {
        sbxd_reply_error(req, 400, "invalid_argument",
                         "field `base` must be an image's name or id (or {\"registry\": REF})");
        json_decref(base);
        goto fail;
    }
    if (sbxd_image_unready(d, json_string_value(base)) ||
        !(config = config_load(d, json_string_value(base), NULL))) {
        sbxd_reply_error(req, 404, "not_found", "base image `%.128s` %s", json_string_value(base),
                         sbxd_image_unready(d, json_string_value(base)) ?: "is not there");
        json_decref(base);
        goto fail;
    }
steps:
    if (json_array_size(all) > BUILD_MAX_STEPS) {
        sbxd_reply_error(req, 400, "invalid_argument", "more than %d steps", BUILD_MAX_STEPS);
        json_decref(base);
        json_decref(config);
        goto fail;
    }
    json_array_foreach(all, i, s)
    {
        if (!step_ok(d, req, s, i)) {
            json_decref(base);
            json_decref(config);
            goto fail;
        }
    }
    *ret_base_config = config;
    return json_pack("{s:o,s:o}", "base", base, "steps", all);
fail:
    json_decref(all);
    return NULL;
}

static json_t *image_view(struct sbxd *d, const char *id)
{
    json_t *c = config_load(d, id, NULL), *b;

    if (c) {
        json_t *v = json_pack("{s:s,s:s,s:O?,s:i,s:O?,s:O?,s:O?,s:O?,s:O?}", "image_id", id,
                              "state", "ready", "created_at", json_object_get(c, "created_at"),
                              "layers", (int)json_array_size(json_object_get(c, "layers")), "env",
                              json_object_get(c, "env"), "workdir", json_object_get(c, "workdir"),
                              "entrypoint", json_object_get(c, "entrypoint"), "user",
                              json_object_get(c, "user"), "recipe", json_object_get(c, "recipe"));
        json_decref(c);
        return v;
    }
    b = build_state_load(d, id);
    for (struct sbxd_build *x = builds; x; x = x->next)
        if (!strcmp(x->id, id)) {
            json_t *v = json_pack("{s:s,s:s,s:O?,s:O,s:i,s:i}", "image_id", id, "state", "building",
                                  "created_at", json_object_get(b, "started_at"), "recipe",
                                  x->recipe, "step", (int)x->step + 1, "steps", (int)x->n_steps);
            json_decref(b);
            return v;
        }
    if (b) {
        json_t *v = json_pack(
            "{s:s,s:s,s:O?,s:O?,s:O?,s:O?}", "image_id", id, "state", "failed", "created_at",
            json_object_get(b, "started_at"), "error", json_object_get(b, "error"), "log_tail",
            json_object_get(b, "log_tail"), "recipe", json_object_get(b, "recipe"));
        json_decref(b);
        return v;
    }
    return NULL;
}

/* A build of recipe into image id, recorded and listed (not started:
 * build_next() does); key: the chain so far (the base's).  NULL when it
 * cannot be recorded. */
static struct sbxd_build *start_build(struct sbxd *d, const char *id, const unsigned char key[32],
                                      json_t *recipe, json_t *base_config)
{
    char dir[PATH_MAX], path[PATH_MAX];
    struct sbxd_build *b;
    json_t *state;

    b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->d = d;
    b->log_fd = -1;
    snprintf(b->id, sizeof(b->id), "%s", id);
    memcpy(b->key, key, 32);
    b->recipe = json_incref(recipe);
    b->n_steps = json_array_size(json_object_get(recipe, "steps"));
    b->config = json_pack(
        "{s:s,s:s,s:o,s:o,s:O?,s:O?,s:O?,s:O}", "image_id", id, "name", id, "layers",
        base_config ? json_deep_copy(json_object_get(base_config, "layers")) : json_array(), "env",
        json_is_array(json_object_get(base_config, "env"))
            ? json_deep_copy(json_object_get(base_config, "env"))
            : json_array(),
        "workdir", json_object_get(base_config, "workdir"), "entrypoint",
        json_object_get(base_config, "entrypoint"), "user", json_object_get(base_config, "user"),
        "recipe", recipe);
    if (!base_config) {
        json_t *base = json_object_get(recipe, "base");
        const char *ref = json_string_value(json_object_get(base, "registry"));
        if (ref) {
            b->insecure = loopback_registry(ref);
            (void)asprintf(&b->source, "docker://%s", ref);
        } else {
            (void)asprintf(&b->source, "oci-archive:%s",
                           json_string_value(json_object_get(base, "oci_archive")));
        }
        json_object_set_new(b->config, "workdir", json_string("/"));
    }
    b->used = json_string_value(json_object_get(recipe, "base"))
                  ? json_pack("[O]", json_object_get(recipe, "base"))
                  : json_array();
    store_path(d->cfg.state_dir, "layers", "", NULL, dir, sizeof(dir));
    (void)sbxd_mkdir_p(dir, 0711);
    store_path(d->cfg.state_dir, "images", id, NULL, dir, sizeof(dir));
    (void)sbxd_mkdir_p(dir, 0700);
    store_path(d->cfg.state_dir, "images", id, "build.log", path, sizeof(path));
    b->log_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    b->started_at = sbxd_now();
    state = json_pack("{s:s,s:O,s:f}", "state", "building", "recipe", recipe, "started_at",
                      b->started_at);
    store_path(d->cfg.state_dir, "images", id, "build.json", path, sizeof(path));
    if (b->log_fd < 0 || sbxd_write_json(path, state, false) < 0) {
        json_decref(state);
        build_free(b);
        return NULL;
    }
    json_decref(state);
    b->next = builds;
    builds = b;
    sbxd_log(NULL, "image %s: building (%zu steps)", id, b->n_steps);
    return b;
}

static void post_image(struct sbxd *d, sbxd_req *req)
{
    json_t *body = sbxd_req_json(req), *recipe, *base_config = NULL, *ident;
    unsigned char key[32] = {0};
    char id[32];
    struct sbxd_build *b;
    json_t *ready = NULL;

    if (!body)
        return;
    recipe = recipe_of(d, req, body, &base_config);
    json_decref(body);
    if (!recipe)
        return;
    if (base_config) {
        ident = base_identity(base_config);
    } else {
        /* A registry's reference or an archive (and its file as it is). */
        const char *arch =
            json_string_value(json_object_get(json_object_get(recipe, "base"), "oci_archive"));
        char sig[65] = "";
        if (arch)
            tree_signature(arch, sig);
        ident = json_pack("{s:O,s:s}", "base", json_object_get(recipe, "base"), "file", sig);
    }
    chain(key, ident);
    json_decref(ident);
    {
        /* The image's id: the base and the steps as they are now. */
        unsigned char ikey[32];
        json_t *steps = json_object_get(recipe, "steps"), *s;
        size_t i;
        memcpy(ikey, key, 32);
        json_array_foreach(steps, i, s)
        {
            json_t *sid = step_identity(d, s);
            chain(ikey, sid);
            json_decref(sid);
        }
        image_id_of(ikey, id, sizeof(id));
    }
    if ((ready = config_load(d, id, NULL)) || sbxd_image_unready(d, id)) {
        json_t *v = image_view(d, id);
        bool failed = v && !strcmp(json_string_value(json_object_get(v, "state")), "failed");
        json_decref(v);
        if (!failed) {
            json_t *c = config_load(d, id, NULL);
            sbxd_reply_json(
                req, 200,
                json_pack("{s:s,s:s}", "image_id", id, "state", c ? "ready" : "building"));
            json_decref(c);
            goto out;
        }
        /* Failed before: built again. */
    }
    b = start_build(d, id, key, recipe, base_config);
    if (!b) {
        sbxd_reply_error(req, 500, "internal", "cannot record the build of `%s`", id);
        goto out;
    }
    build_next(b);
    /* (a recipe of settings only is built already) */
    {
        json_t *v = image_view(d, id);
        sbxd_reply_json(req, 201,
                        json_pack("{s:s,s:s}", "image_id", id, "state",
                                  v ? json_string_value(json_object_get(v, "state")) : "building"));
        json_decref(v);
    }
out:
    json_decref(ready);
    json_decref(recipe);
    json_decref(base_config);
}

static void list_images(struct sbxd *d, sbxd_req *req)
{
    const char *stores[] = {d->cfg.state_dir, d->cfg.image_store};
    json_t *list = json_array(), *seen = json_object();

    for (size_t i = 0; i < 2; i++) {
        char dir[PATH_MAX];
        struct dirent *de;
        DIR *dh;
        snprintf(dir, sizeof(dir), "%s/images", stores[i]);
        if (!(dh = opendir(dir)))
            continue;
        while ((de = readdir(dh))) {
            json_t *v;
            if (de->d_name[0] == '.' || json_object_get(seen, de->d_name) ||
                !(v = image_view(d, de->d_name)))
                continue;
            json_object_set_new(seen, de->d_name, json_true());
            json_array_append_new(list, v);
        }
        closedir(dh);
    }
    json_decref(seen);
    sbxd_reply_json(req, 200, json_pack("{s:o}", "images", list));
}

/* Whether a sandbox that has not finished, a pooled one or a build uses
 * the image (by the name it was asked by). */
static const char *image_user(struct sbxd *d, const char *id)
{
    for (struct sbxd_sandbox *sb = d->sandboxes; sb; sb = sb->next) {
        size_t i;
        json_t *x;
        if (!strcmp(sb->state, "finished"))
            continue;
        if (sb->image && !strcmp(sb->image, id))
            return sb->id;
        json_array_foreach(sb->mounted_images, i,
                           x) if (!strcmp(json_string_value(x), id)) return sb->id;
    }
    for (struct sbxd_sandbox *sb = d->pool; sb; sb = sb->next)
        if (sb->image && !strcmp(sb->image, id))
            return "a sandbox made ahead (the config's pool)";
    for (struct sbxd_build *b = builds; b; b = b->next) {
        size_t i;
        json_t *x;
        if (!strcmp(b->id, id))
            return "its own build";
        json_array_foreach(b->used, i, x) if (!strcmp(json_string_value(x), id)) return b->id;
    }
    return NULL;
}

/* Removes layers of the daemon's store that no image (nor build) uses. */
static void collect_layers(struct sbxd *d)
{
    char dir[PATH_MAX];
    json_t *used = json_object();
    struct dirent *de;
    DIR *dh;

    snprintf(dir, sizeof(dir), "%s/images", d->cfg.state_dir);
    if ((dh = opendir(dir))) {
        while ((de = readdir(dh))) {
            json_t *c, *l;
            size_t i;
            if (de->d_name[0] == '.' || !(c = config_load(d, de->d_name, NULL)))
                continue;
            json_array_foreach(json_object_get(c, "layers"), i, l)
                json_object_set(used, json_string_value(l), json_true());
            json_decref(c);
        }
        closedir(dh);
    }
    for (struct sbxd_build *b = builds; b; b = b->next) {
        size_t i;
        json_t *l;
        json_array_foreach(json_object_get(b->config, "layers"), i, l)
            json_object_set(used, json_string_value(l), json_true());
        json_array_foreach(b->used, i, l) json_object_set(used, json_string_value(l), json_true());
    }
    /* Sandboxes from an image since deleted (they keep running) keep theirs:
     * only layers named l-* (made here) are ever collected, and those of
     * a running sandbox's image are in its spec. */
    for (struct sbxd_sandbox *sb = d->sandboxes; sb; sb = sb->next) {
        json_t *spec, *l;
        size_t i;
        char *p;
        if (!strcmp(sb->state, "finished") || !(p = sbxd_records_path(d, sb->id, "spec.json")))
            continue;
        spec = sbxd_read_json(p);
        free(p);
        json_array_foreach(json_object_get(spec, "image_layers"), i, l)
        {
            const char *s = strrchr(json_string_value(l) ?: "", '/');
            if (s)
                json_object_set(used, s + 1, json_true());
        }
        json_decref(spec);
    }
    snprintf(dir, sizeof(dir), "%s/layers", d->cfg.state_dir);
    if ((dh = opendir(dir))) {
        while ((de = readdir(dh))) {
            char path[PATH_MAX];
            if (strncmp(de->d_name, "l-", 2) || json_object_get(used, de->d_name))
                continue;
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            sbxd_trash(d, path);
            sbxd_log(NULL, "layer %s: removed (no image uses it)", de->d_name);
        }
        closedir(dh);
    }
    json_decref(used);
}

static void delete_image(struct sbxd *d, sbxd_req *req, const char *id)
{
    const char *user = image_user(d, id);
    char path[PATH_MAX];
    bool own = false;
    json_t *c = config_load(d, id, &own), *b = build_state_load(d, id);

    if (!c && !b) {
        sbxd_reply_error(req, 404, "not_found", "no image `%.128s`", id);
        goto out;
    }
    if (c && !own) {
        sbxd_reply_error(req, 409, "failed_precondition",
                         "image `%s` is the system's (sbx-mkimage): not deleted here", id);
        goto out;
    }
    if (user) {
        sbxd_reply_error(req, 409, "failed_precondition", "image `%s` is in use by %s", id, user);
        goto out;
    }
    store_path(d->cfg.state_dir, "images", id, NULL, path, sizeof(path));
    sbxd_trash(d, path);
    sbxd_log(NULL, "image %s: deleted", id);
    collect_layers(d);
    sbxd_reply_empty(req, 204);
out:
    json_decref(c);
    json_decref(b);
}

static void get_logs(struct sbxd *d, sbxd_req *req, const char *id)
{
    char path[PATH_MAX];
    struct sbxd_build *b;
    struct log_follower *f;
    const char *follow = sbxd_req_query(req, "follow");
    sbxd_stream *s;
    char buf[65536];
    ssize_t n;
    int fd;

    for (b = builds; b && strcmp(b->id, id); b = b->next)
        ;
    store_path(d->cfg.state_dir, "images", id, "build.log", path, sizeof(path));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        json_t *v = image_view(d, id);
        if (v)
            sbxd_reply_bytes(req, 200, "text/plain; charset=utf-8", "", 0);
        else
            sbxd_reply_error(req, 404, "not_found", "no image `%.128s`", id);
        json_decref(v);
        return;
    }
    /* What is there, then (with follow, while it builds) what comes. */
    s = sbxd_reply_stream(req, 200, "text/plain; charset=utf-8");
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        sbxd_stream_write(s, buf, (size_t)n);
    close(fd);
    if (!b || !follow || strcmp(follow, "1") || !(f = calloc(1, sizeof(*f)))) {
        sbxd_stream_end(s);
        return;
    }
    f->req = req;
    f->stream = s;
    f->build = b;
    f->next = b->followers;
    b->followers = f;
    sbxd_req_on_abort(req, follower_abort, f);
}

/* ---- export and import ---- */

struct export_job {
    uv_work_t work;
    sbxd_req *req;
    sbxd_stream *stream;
    bool aborted;
    char work_dir[PATH_MAX], tar[PATH_MAX], id[64];
    char **layers;
    json_t *config;
    int r, fd;
    char why[512];
};

static void export_free(struct export_job *j)
{
    if (j->fd >= 0)
        close(j->fd);
    (void)sbx_rm_rf(j->work_dir, NULL);
    for (char **l = j->layers; l && *l; l++)
        free(*l);
    free(j->layers);
    json_decref(j->config);
    free(j);
}

static void export_work(uv_work_t *w)
{
    struct export_job *j = w->data;

    j->r = sbxd_oci_export((const char *const *)j->layers, j->config, j->work_dir, j->tar, -1,
                           j->why, sizeof(j->why));
}

static size_t export_pull(void *buf, size_t max, void *data)
{
    struct export_job *j = data;
    ssize_t n = read(j->fd, buf, max);

    return n < 0 ? SBXD_PULL_FAILED : (size_t)n;
}

static void export_dry(sbxd_stream *s, void *data)
{
    struct export_job *j = data;

    sbxd_req_on_abort(j->req, NULL, NULL);
    sbxd_stream_end(s);
    export_free(j);
}

static void export_abort(sbxd_req *req, void *data)
{
    struct export_job *j = data;

    (void)req;
    if (j->stream) /* streaming: nothing runs on the pool any more */
        export_free(j);
    else
        j->aborted = true;
}

static void export_done(uv_work_t *w, int status)
{
    struct export_job *j = w->data;

    if (j->aborted) {
        export_free(j);
        return;
    }
    if (status < 0 || j->r < 0 || (j->fd = open(j->tar, O_RDONLY | O_CLOEXEC)) < 0) {
        sbxd_req_on_abort(j->req, NULL, NULL);
        sbxd_reply_error(j->req, 500, "internal", "export `%s`: %s", j->id,
                         j->r < 0 ? j->why : "cancelled");
        export_free(j);
        return;
    }
    sbxd_log(NULL, "image %s: exported", j->id);
    j->stream = sbxd_reply_stream(j->req, 200, "application/x-tar");
    sbxd_stream_pull(j->stream, export_pull, export_dry, j);
}

static void export_image(struct sbxd *d, sbxd_req *req, const char *id)
{
    struct sbx_image *img = NULL;
    sbx_error err;
    struct export_job *j;
    char rnd[32];
    size_t n = 0;

    if (sbxd_image_unready(d, id) || sbxd_image_load(d, id, &img, &err) < 0) {
        sbxd_reply_error(req, 404, "not_found", "no ready image `%.128s`", id);
        return;
    }
    j = calloc(1, sizeof(*j));
    if (!j) {
        sbx_image_free(img);
        sbxd_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    j->fd = -1;
    j->req = req;
    snprintf(j->id, sizeof(j->id), "%s", id);
    while (img->layers[n])
        n++;
    j->layers = calloc(n + 1, sizeof(char *));
    for (size_t i = 0; j->layers && i < n; i++)
        j->layers[i] = strdup(img->layers[i]);
    j->config = json_pack("{s:o,s:s,s:o,s:s?}", "env", json_array(), "workdir", img->workdir,
                          "entrypoint", json_array(), "user", img->user);
    for (char **e = img->env; e && *e; e++)
        json_array_append_new(json_object_get(j->config, "env"), json_string(*e));
    for (char **e = img->entrypoint; e && *e; e++)
        json_array_append_new(json_object_get(j->config, "entrypoint"), json_string(*e));
    sbx_image_free(img);
    sbxd_new_id("", rnd, sizeof(rnd));
    snprintf(j->work_dir, sizeof(j->work_dir), "%s/images/.export-%s", d->cfg.state_dir, rnd);
    snprintf(j->tar, sizeof(j->tar), "%s/image.tar", j->work_dir);
    if (!j->layers || sbxd_mkdir_p(j->work_dir, 0700) < 0) {
        export_free(j);
        sbxd_reply_error(req, 500, "internal", "cannot prepare the export");
        return;
    }
    j->work.data = j;
    sbxd_req_on_abort(req, export_abort, j);
    if (uv_queue_work(d->loop, &j->work, export_work, export_done) < 0) {
        sbxd_req_on_abort(req, NULL, NULL);
        export_free(j);
        sbxd_reply_error(req, 500, "internal", "cannot queue the export");
    }
}

bool sbxd_images_spooled(const char *method, const char *path)
{
    return !strcmp(method, "POST") && !strcmp(path, "/v1/images/import");
}

/* An import: the archive (spooled to a file by the HTTP layer) hashed on
 * the thread pool for its id, then unpacked as a build is. */
struct import_job {
    uv_work_t work;
    sbxd_req *req;
    bool aborted;
    char path[PATH_MAX]; /* the archive, moved out of the spool */
    unsigned char key[32];
    int r;
};

static void import_hash(uv_work_t *w)
{
    struct import_job *j = w->data;
    gnutls_hash_hd_t h;
    char buf[1 << 16];
    ssize_t n;
    int fd = open(j->path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || gnutls_hash_init(&h, GNUTLS_DIG_SHA256) < 0) {
        j->r = -EIO;
        if (fd >= 0)
            close(fd);
        return;
    }
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        gnutls_hash(h, buf, (size_t)n);
    j->r = n < 0 ? -errno : 0;
    gnutls_hash_deinit(h, j->key);
    close(fd);
}

static void import_abort(sbxd_req *req, void *data)
{
    (void)req;
    ((struct import_job *)data)->aborted = true;
}

static void build_import_abort(sbxd_req *req, void *data)
{
    struct sbxd_build *b = data;

    (void)req;
    b->waiter = NULL;
}

static void import_hashed(uv_work_t *w, int status)
{
    struct import_job *j = w->data;
    struct sbxd *d = sbxd_global;
    struct sbxd_build *b;
    char id[32];
    json_t *recipe, *v;

    if (j->aborted || status < 0 || j->r < 0) {
        if (!j->aborted) {
            sbxd_req_on_abort(j->req, NULL, NULL);
            sbxd_reply_error(j->req, 500, "internal", "cannot read the archive");
        }
        goto out;
    }
    sbxd_req_on_abort(j->req, NULL, NULL);
    image_id_of(j->key, id, sizeof(id));
    if ((v = config_load(d, id, NULL))) {
        json_decref(v);
        sbxd_reply_json(j->req, 200, json_pack("{s:s,s:s}", "image_id", id, "state", "ready"));
        goto out;
    }
    for (b = builds; b && strcmp(b->id, id); b = b->next)
        ;
    if (b) {
        sbxd_reply_error(j->req, 409, "failed_precondition", "image `%s` is being imported", id);
        goto out;
    }
    recipe = json_pack("{s:{s:s},s:[]}", "base", "oci_archive", j->path, "steps");
    b = start_build(d, id, j->key, recipe, NULL);
    json_decref(recipe);
    if (!b || !(b->import_tar = strdup(j->path))) {
        sbxd_reply_error(j->req, 500, "internal", "cannot record the import of `%s`", id);
        if (b)
            build_failed(b, "out of memory");
        goto out;
    }
    b->waiter = j->req;
    sbxd_req_on_abort(j->req, build_import_abort, b);
    free(j);
    build_next(b);
    return;
out:
    unlink(j->path);
    free(j);
}

/* POST /v1/images/import: an OCI archive in the body; answered once it is
 * an image (its id a hash of the archive). */
static void import_image(struct sbxd *d, sbxd_req *req)
{
    uint64_t len = 0;
    const char *spooled = sbxd_req_body_file(req, &len);
    struct import_job *j;
    char rnd[32];

    if (!spooled || len == 0) {
        sbxd_reply_error(req, 400, "invalid_argument", "the body must be an OCI archive (a tar)");
        return;
    }
    if (!(j = calloc(1, sizeof(*j)))) {
        sbxd_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    /* Out of the spool (which goes with the request), into the store. */
    sbxd_new_id("", rnd, sizeof(rnd));
    snprintf(j->path, sizeof(j->path), "%s/images", d->cfg.state_dir);
    (void)sbxd_mkdir_p(j->path, 0711);
    snprintf(j->path, sizeof(j->path), "%s/images/.import-%s.tar", d->cfg.state_dir, rnd);
    if (rename(spooled, j->path) < 0) {
        sbxd_reply_error(req, 500, "internal", "cannot keep the archive: %s", strerror(errno));
        free(j);
        return;
    }
    j->req = req;
    j->work.data = j;
    sbxd_req_on_abort(req, import_abort, j);
    if (uv_queue_work(d->loop, &j->work, import_hash, import_hashed) < 0) {
        sbxd_req_on_abort(req, NULL, NULL);
        unlink(j->path);
        free(j);
        sbxd_reply_error(req, 500, "internal", "cannot queue the import");
    }
}

void sbxd_images_handle(struct sbxd *d, sbxd_req *req, char segs[][128], size_t n)
{
    const char *method = sbxd_req_method(req);
    json_t *v;

    if (n == 2) {
        if (!strcmp(method, "GET"))
            list_images(d, req);
        else if (!strcmp(method, "POST"))
            post_image(d, req);
        else
            sbxd_reply_error(req, 405, "invalid_argument", "method %s not allowed here", method);
        return;
    }
    if (n == 3 && !strcmp(segs[2], "import") && !strcmp(method, "POST")) {
        import_image(d, req);
        return;
    }
    if (!sbxd_valid_name(segs[2])) {
        sbxd_reply_error(req, 400, "invalid_argument", "`%.64s` is not an image's name or id",
                         segs[2]);
        return;
    }
    if (n == 3 && !strcmp(method, "GET")) {
        if ((v = image_view(d, segs[2])))
            sbxd_reply_json(req, 200, v);
        else
            sbxd_reply_error(req, 404, "not_found", "no image `%.128s`", segs[2]);
    } else if (n == 3 && !strcmp(method, "DELETE")) {
        delete_image(d, req, segs[2]);
    } else if (n == 4 && !strcmp(segs[3], "logs") && !strcmp(method, "GET")) {
        get_logs(d, req, segs[2]);
    } else if (n == 4 && !strcmp(segs[3], "export") && !strcmp(method, "GET")) {
        export_image(d, req, segs[2]);
    } else {
        sbxd_reply_error(req, 404, "not_found", "no such endpoint");
    }
}

/* ---- snapshots ---- */

struct snap_job {
    uv_work_t work;
    sbxd_req *req;
    bool aborted;
    char upper[PATH_MAX], layer_tmp[PATH_MAX], layer[PATH_MAX], layer_name[64];
    char id[32], sandbox_id[32];
    json_t *config;
    int r;
    char why[512];
};

static void snap_work(uv_work_t *w)
{
    struct snap_job *j = w->data;
    sbx_error err = {0};
    struct stat st;

    if (stat(j->upper, &st) < 0) {
        j->r = -errno;
        snprintf(j->why, sizeof(j->why), "the sandbox's writable layer: %s", strerror(errno));
        return;
    }
    j->r = sbx_layer_copy(j->upper, j->layer_tmp, st.st_uid, &err);
    if (j->r < 0) {
        snprintf(j->why, sizeof(j->why), "%s", err.message);
        return;
    }
    if (rename(j->layer_tmp, j->layer) < 0) {
        j->r = -errno;
        snprintf(j->why, sizeof(j->why), "keep the layer: %s", strerror(errno));
        (void)sbx_rm_rf(j->layer_tmp, NULL);
    }
}

static void snap_abort(sbxd_req *req, void *data)
{
    (void)req;
    ((struct snap_job *)data)->aborted = true;
}

static void snap_done(uv_work_t *w, int status)
{
    struct snap_job *j = w->data;
    struct sbxd *d = sbxd_global;
    char path[PATH_MAX];
    int r = j->r;

    if (status < 0 && r == 0) {
        r = -ECANCELED;
        snprintf(j->why, sizeof(j->why), "cancelled");
    }
    if (r == 0) {
        json_array_insert_new(json_object_get(j->config, "layers"), 0, json_string(j->layer_name));
        json_object_set_new(j->config, "created_at", json_real(sbxd_now()));
        store_path(d->cfg.state_dir, "images", j->id, NULL, path, sizeof(path));
        (void)sbxd_mkdir_p(path, 0700);
        store_path(d->cfg.state_dir, "images", j->id, "config.json", path, sizeof(path));
        r = sbxd_write_json(path, j->config, true);
        if (r < 0)
            snprintf(j->why, sizeof(j->why), "write the image's config: %s", strerror(-r));
    }
    if (r < 0)
        sbxd_log(j->sandbox_id, "snapshot failed: %s", j->why);
    else
        sbxd_log(j->sandbox_id, "snapshot: image %s", j->id);
    if (!j->aborted) {
        sbxd_req_on_abort(j->req, NULL, NULL);
        if (r < 0)
            sbxd_reply_error(j->req, 500, "internal", "snapshot: %s", j->why);
        else
            sbxd_reply_json(j->req, 201, json_pack("{s:s}", "image_id", j->id));
    }
    json_decref(j->config);
    free(j);
}

void sbxd_snapshot(struct sbxd *d, sbxd_req *req, struct sbxd_sandbox *sb)
{
    json_t *spec, *config;
    struct snap_job *j;
    char *p;
    char rnd[32];

    if (!strcmp(sb->state, "finished")) {
        sbxd_reply_error(req, 409, "failed_precondition", "sandbox `%s` has finished", sb->id);
        return;
    }
    p = sbxd_records_path(d, sb->id, "spec.json");
    spec = p ? sbxd_read_json(p) : NULL;
    free(p);
    config = config_load(d, sb->image, NULL);
    if (!spec || !config) {
        json_decref(spec);
        json_decref(config);
        sbxd_reply_error(req, 409, "failed_precondition",
                         "sandbox `%s`: its image `%s` is no longer there to stack on", sb->id,
                         sb->image);
        return;
    }
    j = calloc(1, sizeof(*j));
    if (!j) {
        json_decref(spec);
        json_decref(config);
        sbxd_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    sbxd_new_id("im-", j->id, sizeof(j->id));
    sbxd_new_id("", rnd, sizeof(rnd));
    snprintf(j->layer_name, sizeof(j->layer_name), "l-snap-%s", rnd);
    snprintf(j->sandbox_id, sizeof(j->sandbox_id), "%s", sb->id);
    snprintf(j->upper, sizeof(j->upper), "%s/sandboxes/%s/%s", d->cfg.state_dir, sb->id,
             json_is_integer(json_object_get(spec, "disk_mib")) ? "disk/upper" : "upper");
    store_path(d->cfg.state_dir, "layers", j->layer_name, NULL, j->layer, sizeof(j->layer));
    snprintf(j->layer_tmp, sizeof(j->layer_tmp), "%s/layers/.tmp-%s", d->cfg.state_dir,
             j->layer_name);
    {
        char layers[PATH_MAX];
        snprintf(layers, sizeof(layers), "%s/layers", d->cfg.state_dir);
        (void)sbxd_mkdir_p(layers, 0711);
    }
    /* The sandbox's environment and workdir as its image had them. */
    j->config =
        json_pack("{s:s,s:s,s:o,s:O?,s:O?,s:O?,s:O?,s:s}", "image_id", j->id, "name", j->id,
                  "layers", json_deep_copy(json_object_get(config, "layers")), "env",
                  json_object_get(config, "env"), "workdir", json_object_get(config, "workdir"),
                  "entrypoint", json_object_get(config, "entrypoint"), "user",
                  json_object_get(config, "user"), "snapshot_of", sb->id);
    json_decref(spec);
    json_decref(config);
    j->req = req;
    j->work.data = j;
    sbxd_req_on_abort(req, snap_abort, j);
    if (uv_queue_work(d->loop, &j->work, snap_work, snap_done) < 0) {
        sbxd_req_on_abort(req, NULL, NULL);
        json_decref(j->config);
        free(j);
        sbxd_reply_error(req, 500, "internal", "cannot queue the snapshot");
    }
}

/* ---- one directory as an image; an image into a running sandbox ---- */

struct dirsnap_job {
    uv_work_t work;
    sbxd_req *req;
    bool aborted;
    char sandbox_id[32], id[32], path[4096], layer_tmp[PATH_MAX], layer[PATH_MAX], layer_name[64];
    int init_pid, r;
    char why[512];
};

static void dirsnap_work(uv_work_t *w)
{
    struct dirsnap_job *j = w->data;
    struct open_how how = {.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    sbx_error err = {0};
    uid_t base = 0;
    int root, dir;

    root = sbxd_sandbox_root_open(j->sandbox_id, j->init_pid, &base);
    if (root < 0) {
        j->r = root;
        snprintf(j->why, sizeof(j->why), "the sandbox is not running");
        return;
    }
    /* Resolved inside its root: no `..` nor symlink leads out. */
    dir = (int)syscall(SYS_openat2, root, j->path[1] ? j->path + 1 : ".", &how, sizeof(how));
    close(root);
    if (dir < 0) {
        j->r = -errno;
        snprintf(j->why, sizeof(j->why), "`%s`: %s", j->path, strerror(errno));
        return;
    }
    j->r = sbx_layer_copy_at(dir, j->path, j->layer_tmp, base, &err);
    if (j->r < 0) {
        snprintf(j->why, sizeof(j->why), "%s", err.message);
        return;
    }
    if (rename(j->layer_tmp, j->layer) < 0) {
        j->r = -errno;
        snprintf(j->why, sizeof(j->why), "keep the layer: %s", strerror(errno));
        (void)sbx_rm_rf(j->layer_tmp, NULL);
    }
}

static void dirsnap_abort(sbxd_req *req, void *data)
{
    (void)req;
    ((struct dirsnap_job *)data)->aborted = true;
}

static void dirsnap_done(uv_work_t *w, int status)
{
    struct dirsnap_job *j = w->data;
    struct sbxd *d = sbxd_global;
    char path[PATH_MAX];
    int r = status < 0 ? -ECANCELED : j->r;

    if (r == 0) {
        /* An image of that directory alone (to mount elsewhere). */
        json_t *c = json_pack("{s:s,s:s,s:[s],s:[],s:s,s:n,s:n,s:f,s:{s:s,s:s}}", "image_id", j->id,
                              "name", j->id, "layers", j->layer_name, "env", "workdir", "/",
                              "entrypoint", "user", "created_at", sbxd_now(), "snapshot_of",
                              "sandbox", j->sandbox_id, "path", j->path);
        store_path(d->cfg.state_dir, "images", j->id, NULL, path, sizeof(path));
        (void)sbxd_mkdir_p(path, 0700);
        store_path(d->cfg.state_dir, "images", j->id, "config.json", path, sizeof(path));
        r = c ? sbxd_write_json(path, c, true) : -ENOMEM;
        json_decref(c);
        if (r < 0)
            snprintf(j->why, sizeof(j->why), "write the image's config: %s", strerror(-r));
    }
    if (r < 0)
        sbxd_log(j->sandbox_id, "snapshot of %s failed: %s", j->path, j->why);
    else
        sbxd_log(j->sandbox_id, "snapshot of %s: image %s", j->path, j->id);
    if (!j->aborted) {
        sbxd_req_on_abort(j->req, NULL, NULL);
        if (r < 0)
            sbxd_reply_error(j->req,
                             r == -ENOENT || r == -ENOTDIR ? 404
                             : r == -ESRCH                 ? 409
                                                           : 500,
                             r == -ENOENT || r == -ENOTDIR ? "not_found"
                             : r == -ESRCH                 ? "failed_precondition"
                                                           : "internal",
                             "snapshot-directory: %s", j->why);
        else
            sbxd_reply_json(j->req, 201, json_pack("{s:s}", "image_id", j->id));
    }
    free(j);
}

/* An absolute path of plain components (or "/"). */
static bool plain_path(const char *p)
{
    if (!p || p[0] != '/' || strlen(p) > 4095)
        return false;
    for (p++; *p;) {
        size_t n = strcspn(p, "/");
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        p += n;
        if (*p == '/' && !*++p)
            return false;
    }
    return true;
}

void sbxd_snapshot_directory(struct sbxd *d, sbxd_req *req, struct sbxd_sandbox *sb)
{
    json_t *body = sbxd_req_json(req);
    const char *path;
    struct dirsnap_job *j;
    char rnd[32], dir[PATH_MAX];

    if (!body)
        return;
    path = json_string_value(json_object_get(body, "path"));
    if (!plain_path(path) || json_object_size(body) != 1) {
        sbxd_reply_error(req, 400, "invalid_argument",
                         "body must be {\"path\": ABS} (no `.`, `..` or empty components)");
        goto out;
    }
    if (!strcmp(sb->state, "finished") || sb->init_pid <= 0) {
        sbxd_reply_error(req, 409, "failed_precondition", "sandbox `%s` is not running", sb->id);
        goto out;
    }
    if (!(j = calloc(1, sizeof(*j)))) {
        sbxd_reply_error(req, 500, "internal", "out of memory");
        goto out;
    }
    j->req = req;
    j->init_pid = sb->init_pid;
    snprintf(j->sandbox_id, sizeof(j->sandbox_id), "%s", sb->id);
    snprintf(j->path, sizeof(j->path), "%s", path);
    sbxd_new_id("im-", j->id, sizeof(j->id));
    sbxd_new_id("", rnd, sizeof(rnd));
    snprintf(j->layer_name, sizeof(j->layer_name), "l-snap-%s", rnd);
    snprintf(dir, sizeof(dir), "%s/layers", d->cfg.state_dir);
    (void)sbxd_mkdir_p(dir, 0711);
    store_path(d->cfg.state_dir, "layers", j->layer_name, NULL, j->layer, sizeof(j->layer));
    snprintf(j->layer_tmp, sizeof(j->layer_tmp), "%s/.tmp-%s", dir, j->layer_name);
    j->work.data = j;
    sbxd_req_on_abort(req, dirsnap_abort, j);
    if (uv_queue_work(d->loop, &j->work, dirsnap_work, dirsnap_done) < 0) {
        sbxd_req_on_abort(req, NULL, NULL);
        free(j);
        sbxd_reply_error(req, 500, "internal", "cannot queue the snapshot");
    }
out:
    json_decref(body);
}

struct mount_wait {
    sbxd_req *req;
    char image[130];
};

static void mounted(struct sbxd *d, struct sbxd_sandbox *sb, json_t *reply, void *data)
{
    struct mount_wait *mw = data;

    if (json_is_true(json_object_get(reply, "ok"))) {
        if (mw->image[0]) {
            char *path = sbxd_records_path(d, sb->id, "mounted_images.json");
            if (!sb->mounted_images)
                sb->mounted_images = json_array();
            json_array_append_new(sb->mounted_images, json_string(mw->image));
            if (path)
                (void)sbxd_write_json(path, sb->mounted_images, false);
            free(path);
        }
        sbxd_reply_json(mw->req, 200, json_object());
    } else {
        json_t *e = json_object_get(reply, "error");
        const char *code = json_string_value(json_object_get(e, "code")) ?: "internal";
        sbxd_reply_error(mw->req,
                         !strcmp(code, "invalid_argument")      ? 400
                         : !strcmp(code, "failed_precondition") ? 409
                                                                : 500,
                         code, "mount-image: %s",
                         json_string_value(json_object_get(e, "message")) ?: "failed");
    }
    free(mw);
}

void sbxd_mount_image(struct sbxd *d, sbxd_req *req, struct sbxd_sandbox *sb)
{
    json_t *body = sbxd_req_json(req), *layers = json_array(), *img_j;
    const char *path, *image = NULL, *k;
    struct sbx_image *img = NULL;
    struct mount_wait *mw;
    sbx_error err;
    json_t *x;

    if (!body)
        goto out;
    path = json_string_value(json_object_get(body, "path"));
    img_j = json_object_get(body, "image");
    json_object_foreach(body, k, x)
    {
        if (strcmp(k, "path") && strcmp(k, "image")) {
            sbxd_reply_error(req, 400, "invalid_argument", "unknown field `%.64s`", k);
            goto out;
        }
    }
    if (!plain_path(path) || !path[1] ||
        (img_j && !json_is_null(img_j) && !json_is_string(img_j))) {
        sbxd_reply_error(req, 400, "invalid_argument",
                         "body must be {\"path\": ABS, \"image\": ID or null}");
        goto out;
    }
    if (!strcmp(sb->state, "finished")) {
        sbxd_reply_error(req, 409, "failed_precondition", "sandbox `%s` has finished", sb->id);
        goto out;
    }
    if ((image = json_string_value(img_j))) {
        if (sbxd_image_unready(d, image) || sbxd_image_load(d, image, &img, &err) < 0) {
            sbxd_reply_error(req, 404, "not_found", "image `%.128s` %s", image,
                             sbxd_image_unready(d, image) ?: "is not there");
            goto out;
        }
        for (char **l = img->layers; l && *l; l++)
            json_array_append_new(layers, json_string(*l));
        sbx_image_free(img);
    }
    mw = calloc(1, sizeof(*mw));
    if (!mw) {
        sbxd_reply_error(req, 500, "internal", "out of memory");
        goto out;
    }
    mw->req = req;
    snprintf(mw->image, sizeof(mw->image), "%s", image ? image : "");
    if (sbxd_monitor_request(
            d, sb, json_pack("{s:s,s:s,s:O}", "op", "mount_image", "path", path, "layers", layers),
            mounted, mw) < 0) {
        free(mw);
        sbxd_reply_error(req, 409, "failed_precondition", "sandbox `%s` is not running", sb->id);
    }
out:
    json_decref(layers);
    json_decref(body);
}

/* ---- start ---- */

void sbxd_images_start(struct sbxd *d)
{
    char dir[PATH_MAX];
    struct dirent *de;
    DIR *dh;

    /* Builds an earlier run left: failed (their step processes died with
     * it or end on their own; their sandboxes are cleaned by id). */
    snprintf(dir, sizeof(dir), "%s/images", d->cfg.state_dir);
    if ((dh = opendir(dir))) {
        while ((de = readdir(dh))) {
            json_t *b;
            if (de->d_name[0] == '.' || !(b = build_state_load(d, de->d_name)))
                continue;
            if (!strcmp(json_string_value(json_object_get(b, "state")) ?: "", "building")) {
                char path[PATH_MAX];
                json_object_set_new(b, "state", json_string("failed"));
                json_object_set_new(b, "error",
                                    json_string("the daemon stopped during the build: ask again"));
                store_path(d->cfg.state_dir, "images", de->d_name, "build.json", path,
                           sizeof(path));
                (void)sbxd_write_json(path, b, true);
            }
            json_decref(b);
        }
        closedir(dh);
    }
    /* Imports and exports a stop interrupted. */
    snprintf(dir, sizeof(dir), "%s/images", d->cfg.state_dir);
    if ((dh = opendir(dir))) {
        while ((de = readdir(dh))) {
            char path[PATH_MAX];
            if (strncmp(de->d_name, ".import-", 8) && strncmp(de->d_name, ".export-", 8))
                continue;
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            (void)sbx_rm_rf(path, NULL);
        }
        closedir(dh);
    }
    /* The sandboxes of lost build steps. */
    snprintf(dir, sizeof(dir), "%s/sandboxes", d->cfg.run_dir);
    if ((dh = opendir(dir))) {
        while ((de = readdir(dh))) {
            sbx_error err;
            if (strncmp(de->d_name, "bd-", 3))
                continue;
            if (sbx_sandbox_cleanup(d->cfg.run_dir, d->cfg.state_dir, d->cfg.cgroup_parent,
                                    de->d_name, &err) < 0)
                sbxd_log(NULL, "build step %s: cleanup: %s", de->d_name, err.message);
        }
        closedir(dh);
    }
    /* Half-made layers. */
    snprintf(dir, sizeof(dir), "%s/layers", d->cfg.state_dir);
    if ((dh = opendir(dir))) {
        while ((de = readdir(dh))) {
            char path[PATH_MAX];
            if (strncmp(de->d_name, ".tmp-", 5))
                continue;
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            (void)sbx_rm_rf(path, NULL);
        }
        closedir(dh);
    }
}
