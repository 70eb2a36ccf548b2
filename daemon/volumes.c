/* volumes.c — named and ephemeral volumes, and the host paths an
 * administrator lets sandboxes bind.
 *
 * A volume is STATE/volumes/NAME: volume.json ({"volume_id", "name",
 * "created_at", "ephemeral", "used", "size_mib"}) and data/, the files,
 * owned as a sandbox's root would own them were it host root: each sandbox binds data/
 * idmapped into its own user namespace (runtime/mounts.c), so the files
 * are its root's there, and the files API (files.c, as host root) sees the
 * same owners.  An ephemeral volume is named by its id and goes when the
 * last sandbox using it finishes (or at the next start, when the daemon
 * was down then).  A volume in use by a sandbox that has not finished
 * cannot be deleted (409).  Deleting renames the directory into the trash
 * (spare.c) and empties it on the thread pool.
 *
 * A volume with a size cap ("size_mib") keeps its files in an ext4 file
 * system of that size, disk.img beside data/ (made by mkfs.ext4 on the
 * thread pool), attached to a loop device and mounted at data/ (nosuid,
 * nodev): a sandbox writing past it gets ENOSPC, the host's disk does not
 * fill.  It stays mounted while the daemon runs and while it is down (a
 * sandbox's bind holds it anyway); a start mounts what is not, through the
 * loop device already backed by disk.img when there is one: the same
 * image is never mounted twice as two file systems.  Delete unmounts it
 * (the loop device goes with its last mount).
 *
 * Host paths: the config's "host_mounts" ([{"path": ABS, "writable":
 * BOOL}]) lists the trees a create's `mounts` may take from, read-only
 * unless the entry is writable and the mount asks.  The source is opened by
 * the runtime beneath the allowed path (never through a symlink out of it),
 * so this file checks only the spelling and the allowlist. */
#include "sandboxd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define VOLUME_MIN_MIB 16
#define VOLUME_MAX_MIB (16 << 20) /* 16 TiB */

static void volumes_dir(struct sbxd *d, char *buf, size_t size)
{
    snprintf(buf, size, "%s/volumes", d->cfg.state_dir);
}

/* STATE/volumes/NAME[/rest]. */
static void volume_path(struct sbxd *d, const char *name, const char *rest, char *buf, size_t size)
{
    snprintf(buf, size, "%s/volumes/%s%s%s", d->cfg.state_dir, name, rest ? "/" : "",
             rest ? rest : "");
}

/* A volume's name: a name of sbxd_valid_name()'s that does not start with
 * a dot (the directory's temporaries do). */
static bool valid_volume_name(const char *name)
{
    return sbxd_valid_name(name) && name[0] != '.';
}

static json_t *volume_load(struct sbxd *d, const char *name)
{
    char path[PATH_MAX];
    json_t *v;

    volume_path(d, name, "volume.json", path, sizeof(path));
    v = sbxd_read_json(path);
    if (v && !json_is_object(v)) {
        json_decref(v);
        return NULL;
    }
    return v;
}

/* The volume a create or a call names: by name, or by its id. */
static json_t *volume_find(struct sbxd *d, const char *ref)
{
    char dir[PATH_MAX];
    struct dirent *de;
    json_t *v = NULL;
    DIR *dh;

    if (!ref || !valid_volume_name(ref))
        return NULL;
    if ((v = volume_load(d, ref)))
        return v;
    if (!sbxd_valid_id(ref, "vo-"))
        return NULL;
    volumes_dir(d, dir, sizeof(dir));
    if (!(dh = opendir(dir)))
        return NULL;
    while (!v && (de = readdir(dh))) {
        if (!valid_volume_name(de->d_name))
            continue;
        v = volume_load(d, de->d_name);
        if (v && strcmp(json_string_value(json_object_get(v, "volume_id")) ?: "", ref)) {
            json_decref(v);
            v = NULL;
        }
    }
    closedir(dh);
    return v;
}

static const char *vname(json_t *v)
{
    return json_string_value(json_object_get(v, "name"));
}

/* The sandboxes that have not finished and use the volume. */
static json_t *users_of(struct sbxd *d, const char *name)
{
    json_t *users = json_array();

    for (struct sbxd_sandbox *sb = d->sandboxes; sb; sb = sb->next) {
        const char *dst;
        json_t *v;

        if (!strcmp(sb->state, "finished"))
            continue;
        json_object_foreach(json_object_get(sb->request, "volumes"), dst, v)
        {
            if (!strcmp(json_string_value(v) ?: "", name)) {
                json_array_append_new(users, json_string(sb->id));
                break;
            }
        }
    }
    return users;
}

/* What the API shows of a volume. */
static json_t *volume_view(struct sbxd *d, json_t *v)
{
    json_t *o = json_deep_copy(v);

    json_object_del(o, "used");
    json_object_set_new(o, "in_use_by", users_of(d, vname(v)));
    return o;
}

/* Mounts a capped volume's disk.img at its data/ (unless it is). */
static int volume_mount(const char *voldir, const char **why)
{
    char img[PATH_MAX], data[PATH_MAX];
    sbx_error err;

    snprintf(img, sizeof(img), "%s/disk.img", voldir);
    snprintf(data, sizeof(data), "%s/data", voldir);
    *why = "mount its file system";
    return sbx_disk_mount(img, data, &err);
}

/* Makes STATE/volumes/NAME whole beside it, then renames it into place: a
 * volume is there with its volume.json or not at all.  With size_mib, its
 * file system is made and mounted (blocking: the thread pool's work).
 * Runs on any thread: *why names the step that failed. */
static int volume_make(const char *state_dir, const char *name, const char *id, bool ephemeral,
                       uint64_t size_mib, double now, json_t **ret, const char **why)
{
    char dir[PATH_MAX], tmp[PATH_MAX], path[PATH_MAX];
    json_t *v = NULL;
    sbx_error err;
    int r;

    snprintf(dir, sizeof(dir), "%s/volumes", state_dir);
    *why = "make the volumes directory";
    if ((r = sbxd_mkdir_p(dir, 0700)) < 0)
        return r;
    snprintf(tmp, sizeof(tmp), "%s/.new-%s", dir, id);
    *why = "make the volume's directory";
    if (mkdir(tmp, 0700) < 0)
        return -errno;
    snprintf(path, sizeof(path), "%s/data", tmp);
    if (mkdir(path, 0755) < 0 || chmod(path, 0755) < 0) {
        r = -errno;
        goto fail;
    }
    if (size_mib) {
        snprintf(path, sizeof(path), "%s/disk.img", tmp);
        *why = "make its file system (disk.img, by mkfs.ext4 from e2fsprogs)";
        if ((r = sbx_disk_create(path, size_mib, &err)) < 0)
            goto fail;
    }
    v = json_pack("{s:s,s:s,s:f,s:b,s:b,s:o}", "volume_id", id, "name", name, "created_at", now,
                  "ephemeral", ephemeral, "used", 0, "size_mib",
                  size_mib ? json_integer((json_int_t)size_mib) : json_null());
    snprintf(path, sizeof(path), "%s/volume.json", tmp);
    *why = "write volume.json";
    if (!v || (r = sbxd_write_json(path, v, true)) < 0) {
        r = v ? r : -ENOMEM;
        goto fail;
    }
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    *why = "rename the volume into place";
    if (rename(tmp, path) < 0) {
        r = errno == ENOTEMPTY ? -EEXIST : -errno;
        goto fail;
    }
    if (size_mib && (r = volume_mount(path, why)) < 0) {
        (void)sbxd_rm_rf(path);
        json_decref(v);
        return r;
    }
    if (size_mib) {
        /* (e2fsck would make it again when it needs one) */
        snprintf(tmp, sizeof(tmp), "%s/data/lost+found", path);
        (void)rmdir(tmp);
    }
    *ret = v;
    return 0;
fail:
    json_decref(v);
    (void)sbxd_rm_rf(tmp);
    return r;
}

static void volume_remove(struct sbxd *d, const char *name)
{
    char path[PATH_MAX];

    /* A capped volume's file system first (the removal never enters a
     * mount point); sandboxes' binds of it live on until they end. */
    volume_path(d, name, "data", path, sizeof(path));
    if (sbx_is_mount_point(path) && umount2(path, MNT_DETACH) < 0)
        sbxd_log(NULL, "volume %s: unmount %s: %s", name, path, strerror(errno));
    volume_path(d, name, NULL, path, sizeof(path));
    sbxd_trash(d, path);
    sbxd_log(NULL, "volume %s: deleted", name);
}

static void list_volumes(struct sbxd *d, sbxd_req *req)
{
    char dir[PATH_MAX];
    json_t *list = json_array();
    struct dirent *de;
    DIR *dh;

    volumes_dir(d, dir, sizeof(dir));
    if ((dh = opendir(dir))) {
        while ((de = readdir(dh))) {
            json_t *v;
            if (!valid_volume_name(de->d_name) || !(v = volume_load(d, de->d_name)))
                continue;
            json_array_append_new(list, volume_view(d, v));
            json_decref(v);
        }
        closedir(dh);
    }
    sbxd_reply_json(req, 200, json_pack("{s:o}", "volumes", list));
}

/* A volume made on the thread pool (one with a file system of its own). */
struct make_job {
    uv_work_t work;
    sbxd_req *req;
    bool aborted, ephemeral;
    char state_dir[PATH_MAX], name[64], id[32];
    uint64_t size_mib;
    double now;
    /* results */
    int r;
    const char *why;
    json_t *v;
};

static void make_work(uv_work_t *w)
{
    struct make_job *j = w->data;

    j->r = volume_make(j->state_dir, j->name, j->id, j->ephemeral, j->size_mib, j->now, &j->v,
                       &j->why);
}

static void make_abort(sbxd_req *req, void *data)
{
    (void)req;
    ((struct make_job *)data)->aborted = true;
}

static void reply_made(struct sbxd *d, sbxd_req *req, const char *name, const char *id, int r,
                       const char *why, json_t *v)
{
    if (r == -EEXIST && (v = volume_load(d, name))) {
        sbxd_reply_json(req, 200, volume_view(d, v));
        json_decref(v);
        return;
    }
    if (r < 0) {
        sbxd_log(NULL, "volume %s: cannot %s: %s", name, why, strerror(-r));
        sbxd_reply_error(req, 500, "internal", "cannot make volume `%s`: %s: %s", name, why,
                         strerror(-r));
        return;
    }
    sbxd_log(NULL, "volume %s: created (%s%s)", name, id,
             json_is_true(json_object_get(v, "ephemeral")) ? ", ephemeral" : "");
    sbxd_reply_json(req, 201, volume_view(d, v));
}

static void make_done(uv_work_t *w, int status)
{
    struct make_job *j = w->data;

    if (status < 0) {
        j->r = -ECANCELED;
        j->why = "make it";
    }
    if (!j->aborted) {
        sbxd_req_on_abort(j->req, NULL, NULL);
        reply_made(sbxd_global, j->req, j->name, j->id, j->r, j->why, j->v);
    } else if (j->r == 0) {
        sbxd_log(NULL, "volume %s: created (%s), its client gone", j->name, j->id);
    }
    json_decref(j->v);
    free(j);
}

/* Makes a volume and answers 201 (200 when one of that name beat it):
 * here, or on the thread pool when it has a file system to make. */
static void make_and_reply(struct sbxd *d, sbxd_req *req, const char *name, const char *id,
                           bool ephemeral, uint64_t size_mib)
{
    struct make_job *j;
    const char *why;
    json_t *v = NULL;
    int r;

    if (!size_mib) {
        r = volume_make(d->cfg.state_dir, name, id, ephemeral, 0, sbxd_now(), &v, &why);
        reply_made(d, req, name, id, r, why, v);
        json_decref(v);
        return;
    }
    if (!(j = calloc(1, sizeof(*j)))) {
        sbxd_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    j->req = req;
    j->ephemeral = ephemeral;
    j->size_mib = size_mib;
    j->now = sbxd_now();
    snprintf(j->state_dir, sizeof(j->state_dir), "%s", d->cfg.state_dir);
    snprintf(j->name, sizeof(j->name), "%s", name);
    snprintf(j->id, sizeof(j->id), "%s", id);
    j->work.data = j;
    sbxd_req_on_abort(req, make_abort, j);
    if (uv_queue_work(d->loop, &j->work, make_work, make_done) < 0) {
        sbxd_req_on_abort(req, NULL, NULL);
        sbxd_reply_error(req, 500, "internal", "cannot queue the volume's making");
        free(j);
    }
}

/* The body of PUT /v1/volumes/NAME and POST /v1/volumes: its size cap
 * (0: none) and whether it is ephemeral.  Replies 400 and returns false. */
static bool parse_volume_body(sbxd_req *req, json_t *body, bool post, uint64_t *size_mib)
{
    const char *k;
    json_t *x;

    *size_mib = 0;
    json_object_foreach(body, k, x)
    {
        if (!strcmp(k, "size_mib") && !json_is_null(x)) {
            if (!json_is_integer(x) || json_integer_value(x) < VOLUME_MIN_MIB ||
                json_integer_value(x) > VOLUME_MAX_MIB) {
                sbxd_reply_error(req, 400, "invalid_argument",
                                 "field `size_mib` must be an integer from %d to %d",
                                 VOLUME_MIN_MIB, VOLUME_MAX_MIB);
                return false;
            }
            *size_mib = (uint64_t)json_integer_value(x);
        } else if (!(post && !strcmp(k, "ephemeral")) && strcmp(k, "size_mib")) {
            sbxd_reply_error(req, 400, "invalid_argument", "unknown field `%.64s`", k);
            return false;
        }
    }
    if (post && !json_is_true(json_object_get(body, "ephemeral"))) {
        sbxd_reply_error(
            req, 400, "invalid_argument",
            "body must be {\"ephemeral\": true} (a named volume: PUT /v1/volumes/NAME)");
        return false;
    }
    return true;
}

/* PUT /v1/volumes/NAME: made when missing (201), else as it is (200); one
 * there with another size cap than asked: 409. */
static void put_volume(struct sbxd *d, sbxd_req *req, const char *name)
{
    json_t *body = sbxd_req_json(req), *v;
    uint64_t size_mib;
    char id[32];

    if (!body)
        return;
    if (!parse_volume_body(req, body, false, &size_mib))
        goto out;
    if ((v = volume_load(d, name))) {
        json_t *have = json_object_get(v, "size_mib");
        if (json_object_get(body, "size_mib") && (uint64_t)json_integer_value(have) != size_mib)
            sbxd_reply_error(req, 409, "already_exists", "volume `%s` exists with another size cap",
                             name);
        else
            sbxd_reply_json(req, 200, volume_view(d, v));
        json_decref(v);
        goto out;
    }
    sbxd_new_id("vo-", id, sizeof(id));
    make_and_reply(d, req, name, id, false, size_mib);
out:
    json_decref(body);
}

/* POST /v1/volumes {"ephemeral": true}: a volume named by its id. */
static void post_volume(struct sbxd *d, sbxd_req *req)
{
    json_t *body = sbxd_req_json(req);
    uint64_t size_mib;
    char id[32];

    if (!body)
        return;
    if (parse_volume_body(req, body, true, &size_mib)) {
        sbxd_new_id("vo-", id, sizeof(id));
        make_and_reply(d, req, id, id, true, size_mib);
    }
    json_decref(body);
}

static void delete_volume(struct sbxd *d, sbxd_req *req, json_t *v)
{
    json_t *users = users_of(d, vname(v));

    if (json_array_size(users) > 0) {
        sbxd_reply_error(req, 409, "failed_precondition",
                         "volume `%s` is mounted by %zu running sandbox%s (%s%s)", vname(v),
                         json_array_size(users), json_array_size(users) == 1 ? "" : "es",
                         json_string_value(json_array_get(users, 0)),
                         json_array_size(users) > 1 ? ", ..." : "");
    } else {
        volume_remove(d, vname(v));
        sbxd_reply_empty(req, 204);
    }
    json_decref(users);
}

void sbxd_volumes_handle(struct sbxd *d, sbxd_req *req, char segs[][128], size_t n)
{
    const char *method = sbxd_req_method(req);
    json_t *v;

    if (n == 2) {
        if (!strcmp(method, "GET"))
            list_volumes(d, req);
        else if (!strcmp(method, "POST"))
            post_volume(d, req);
        else
            sbxd_reply_error(req, 405, "invalid_argument", "method %s not allowed here", method);
        return;
    }
    if (!valid_volume_name(segs[2])) {
        sbxd_reply_error(
            req, 400, "invalid_argument",
            "volume name `%.64s` must match [A-Za-z0-9._-]{1,63}, not starting with `.`", segs[2]);
        return;
    }
    if (n == 3 && !strcmp(method, "PUT")) {
        put_volume(d, req, segs[2]);
        return;
    }
    if (n > 4) {
        sbxd_reply_error(req, 404, "not_found", "no such endpoint");
        return;
    }
    if (!(v = volume_find(d, segs[2]))) {
        sbxd_reply_error(req, 404, "not_found", "no volume `%s`", segs[2]);
        return;
    }
    if (n == 3 && !strcmp(method, "GET"))
        sbxd_reply_json(req, 200, volume_view(d, v));
    else if (n == 3 && !strcmp(method, "DELETE"))
        delete_volume(d, req, v);
    else if (n == 4 &&
             (!strcmp(segs[3], "files") || !strcmp(segs[3], "ls") || !strcmp(segs[3], "mkdir"))) {
        char data[PATH_MAX];
        volume_path(d, vname(v), "data", data, sizeof(data));
        sbxd_files_handle_dir(d, req, data, segs[3]);
    } else if (n == 3)
        sbxd_reply_error(req, 405, "invalid_argument", "method %s not allowed here", method);
    else
        sbxd_reply_error(req, 404, "not_found", "no such endpoint");
    json_decref(v);
}

/* An absolute path of plain components: no "", ".", "..", no trailing
 * slash, at most 4095 bytes. */
static bool plain_abs_path(const char *p)
{
    if (!p || p[0] != '/' || strlen(p) > 4095 || !p[1])
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

static bool reserved_dst(const char *dst)
{
    static const char *const dirs[] = {"/proc", "/sys", "/dev"};

    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        size_t n = strlen(dirs[i]);
        if (!strncmp(dst, dirs[i], n) && (dst[n] == '\0' || dst[n] == '/'))
            return true;
    }
    return false;
}

/* The allowlist entry src is under (its path a component prefix of src),
 * the longest one; NULL when none. */
static json_t *allowed_entry(struct sbxd *d, const char *src, size_t *ret_len)
{
    json_t *e, *best = NULL;
    size_t i, best_len = 0;

    json_array_foreach(d->cfg.host_mounts, i, e)
    {
        const char *p = json_string_value(json_object_get(e, "path"));
        size_t n = p ? strlen(p) : 0;
        while (n > 1 && p[n - 1] == '/')
            n--;
        if (n == 0 || strncmp(src, p, n) || (src[n] != '\0' && src[n] != '/' && n > 1))
            continue;
        if (!best || n > best_len) {
            best = e;
            best_len = n;
        }
    }
    *ret_len = best_len;
    return best;
}

#define BAD(field, ...)                                                                            \
    do {                                                                                           \
        sbxd_reply_error(req, 400, "invalid_argument", "field `" field "`: " __VA_ARGS__);         \
        return false;                                                                              \
    } while (0)

static bool dst_ok(sbxd_req *req, json_t *mounts, const char *dst, const char *field)
{
    json_t *m;
    size_t i;

    if (!plain_abs_path(dst) || reserved_dst(dst)) {
        sbxd_reply_error(req, 400, "invalid_argument",
                         "field `%s`: `%.256s` must be an absolute path without `.`, `..` or "
                         "empty components, not `/` nor under /proc, /sys or /dev",
                         field, dst ? dst : "");
        return false;
    }
    json_array_foreach(mounts, i, m)
    {
        if (!strcmp(json_string_value(json_object_get(m, "dst")), dst)) {
            sbxd_reply_error(req, 400, "invalid_argument", "field `%s`: two mounts at `%.256s`",
                             field, dst);
            return false;
        }
    }
    if (json_array_size(mounts) >= SBX_MAX_MOUNTS) {
        sbxd_reply_error(req, 400, "invalid_argument", "field `%s`: more than %d mounts", field,
                         SBX_MAX_MOUNTS);
        return false;
    }
    return true;
}

bool sbxd_host_mount(struct sbxd *d, const char *src, const char *dst, bool readonly,
                     json_t *mounts, char *why, size_t why_len)
{
    const char *rel;
    json_t *entry;
    size_t len;

    if (!plain_abs_path(src)) {
        snprintf(why, why_len,
                 "`src` must be an absolute host path without `.`, `..` or empty components");
        return false;
    }
    entry = allowed_entry(d, src, &len);
    if (!entry) {
        snprintf(why, why_len,
                 "`%.256s` is not under a host path this daemon allows (config `host_mounts`)",
                 src);
        return false;
    }
    rel = src[len] == '/' ? src + len + 1 : (len == 1 ? src + 1 : "");
    {
        /* Checked here for a clear answer; the runtime opens it again the
         * same way when it binds it (what counts). */
        struct open_how how = {.flags = O_PATH | O_CLOEXEC,
                               .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
        int root = open(json_string_value(json_object_get(entry, "path")),
                        O_PATH | O_DIRECTORY | O_CLOEXEC),
            fd = root < 0 ? -1
                          : (int)syscall(SYS_openat2, root, *rel ? rel : ".", &how, sizeof(how));
        int e = fd < 0 ? errno : 0;
        if (fd >= 0)
            close(fd);
        if (root >= 0)
            close(root);
        if (fd < 0) {
            snprintf(why, why_len, "`%.256s` %s", src,
                     e == EXDEV || e == ELOOP ? "leads out of the allowed host path"
                     : e == ENOENT            ? "does not exist"
                                              : strerror(e));
            return false;
        }
    }
    if (!readonly && !json_is_true(json_object_get(entry, "writable"))) {
        snprintf(why, why_len, "`%.256s` may only be mounted read-only", src);
        return false;
    }
    json_array_append_new(mounts, json_pack("{s:s,s:s,s:s,s:b}", "root",
                                            json_string_value(json_object_get(entry, "path")),
                                            "path", rel, "dst", dst, "readonly", readonly));
    return true;
}

bool sbxd_mounts_for_create(struct sbxd *d, sbxd_req *req, json_t *body, json_t *mounts)
{
    json_t *vols = json_object_get(body, "volumes"), *hm = json_object_get(body, "mounts"), *x;
    const char *dst;
    size_t i;

    if (vols && !json_is_null(vols) && !json_is_object(vols))
        BAD("volumes", "must be an object {\"/path\": \"volume\"}");
    if (hm && !json_is_null(hm) && !json_is_array(hm))
        BAD("mounts", "must be an array of {\"src\", \"dst\", \"readonly\"}");
    json_object_foreach(vols, dst, x)
    {
        char data[PATH_MAX];
        json_t *v;

        if (!json_is_string(x))
            BAD("volumes", "each value must be a volume's name or id");
        if (!dst_ok(req, mounts, dst, "volumes"))
            return false;
        if (!(v = volume_find(d, json_string_value(x)))) {
            sbxd_reply_error(req, 404, "not_found", "field `volumes`: no volume `%.64s`",
                             json_string_value(x));
            return false;
        }
        /* The record names it by name, whatever the request said. */
        json_object_set_new(vols, dst, json_string(vname(v)));
        volume_path(d, vname(v), "data", data, sizeof(data));
        json_array_append_new(mounts, json_pack("{s:s,s:s,s:s,s:b}", "root", data, "path", "",
                                                "dst", dst, "readonly", 0));
        /* An ephemeral volume goes when its last user finishes, once it had
         * one. */
        if (json_is_true(json_object_get(v, "ephemeral")) &&
            !json_is_true(json_object_get(v, "used"))) {
            char path[PATH_MAX];
            json_object_set_new(v, "used", json_true());
            volume_path(d, vname(v), "volume.json", path, sizeof(path));
            (void)sbxd_write_json(path, v, false);
        }
        json_decref(v);
    }
    json_array_foreach(hm, i, x)
    {
        const char *src = json_string_value(json_object_get(x, "src")), *k;
        const char *mdst = json_string_value(json_object_get(x, "dst"));
        json_t *ro = json_object_get(x, "readonly"), *y;
        char why[512];

        if (!json_is_object(x))
            BAD("mounts", "each must be {\"src\": ABS, \"dst\": ABS, \"readonly\": BOOL}");
        json_object_foreach(x, k, y)
        {
            if (strcmp(k, "src") && strcmp(k, "dst") && strcmp(k, "readonly"))
                BAD("mounts", "has an unknown member `%.32s`", k);
        }
        if (ro && !json_is_boolean(ro))
            BAD("mounts", "`readonly` must be true or false");
        if (!dst_ok(req, mounts, mdst, "mounts"))
            return false;
        if (!sbxd_host_mount(d, src, mdst, !ro || json_is_true(ro), mounts, why, sizeof(why))) {
            sbxd_reply_error(req, 400, "invalid_argument", "field `mounts`: %s", why);
            return false;
        }
    }
    return true;
}

#undef BAD

/* Whether a sandbox that has not finished uses the volume. */
static bool in_use(struct sbxd *d, const char *name)
{
    json_t *users = users_of(d, name);
    bool used = json_array_size(users) > 0;

    json_decref(users);
    return used;
}

void sbxd_volumes_release(struct sbxd *d, struct sbxd_sandbox *sb)
{
    const char *dst;
    json_t *x;

    json_object_foreach(json_object_get(sb->request, "volumes"), dst, x)
    {
        const char *name = json_string_value(x);
        json_t *v = name && valid_volume_name(name) ? volume_load(d, name) : NULL;

        if (v && json_is_true(json_object_get(v, "ephemeral")) && !in_use(d, name))
            volume_remove(d, name);
        json_decref(v);
    }
}

void sbxd_volumes_start(struct sbxd *d)
{
    char dir[PATH_MAX];
    struct dirent *de;
    DIR *dh;

    volumes_dir(d, dir, sizeof(dir));
    if (!(dh = opendir(dir)))
        return;
    while ((de = readdir(dh))) {
        char path[PATH_MAX];
        json_t *v;

        if (!strncmp(de->d_name, ".new-", 5)) {
            /* A volume being made when the daemon went. */
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            (void)sbxd_rm_rf(path);
            continue;
        }
        if (!valid_volume_name(de->d_name) || !(v = volume_load(d, de->d_name)))
            continue;
        if (json_is_true(json_object_get(v, "ephemeral")) &&
            json_is_true(json_object_get(v, "used")) && !in_use(d, de->d_name)) {
            volume_remove(d, de->d_name);
        } else if (json_is_integer(json_object_get(v, "size_mib"))) {
            const char *why;
            int r;
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            if ((r = volume_mount(path, &why)) < 0)
                sbxd_log(NULL, "volume %s: cannot %s: %s (its sandboxes will fail)", de->d_name,
                         why, strerror(-r));
        }
        json_decref(v);
    }
    closedir(dh);
}
