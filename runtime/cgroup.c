/* cgroup.c — picks the cgroup backend this host needs and holds what the v1
 * and v2 backends share: finding our own cgroup, reading and writing control
 * files, and killing, draining and removing a sandbox's directories. */
#include "internal.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>

#define CGROUP_DRAIN_TIMEOUT_MS 5000
#define CGROUP_MAX_DEPTH        32

static const struct sbx__cgroup_ops *forced_ops;

void sbx__cgroup_force_ops(const struct sbx__cgroup_ops *ops)
{
    forced_ops = ops;
}

const struct sbx__cgroup_ops *sbx__cgroup_ops(void)
{
    struct statfs sfs;

    if (forced_ops)
        return forced_ops;

    /* A hybrid host (v1 controllers plus a controller-less cgroup2 mount at
     * /sys/fs/cgroup/unified) has a tmpfs here, and needs v1. */
    if (statfs("/sys/fs/cgroup", &sfs) == 0 && sfs.f_type == CGROUP2_SUPER_MAGIC)
        return &sbx__cgroup_v2_ops;
    return &sbx__cgroup_v1_ops;
}

SBX_PUBLIC const char *sbx_cgroup_mode(void)
{
    return sbx__cgroup_ops()->name;
}

static bool name_ok(const char *s, size_t max)
{
    size_t len = strlen(s);

    if (len == 0 || len > max || !strcmp(s, ".") || !strcmp(s, ".."))
        return false;
    for (const char *p = s; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == '-'))
            return false;
    }
    return true;
}

int sbx__cgroup_check_names(const char *parent, const char *id, const char **ret_parent,
                            sbx_error *err)
{
    char buf[256];

    if (!id || !name_ok(id, 64))
        return sbx__error(err, EINVAL, "cgroup name `%s`", id ? id : "(null)");
    if (!parent)
        parent = "sandboxd";
    /* The parent may nest ("a/b"), but every component must be a plain name
     * so that it can never climb out of our own cgroup. */
    if (strlen(parent) >= sizeof(buf))
        return sbx__error(err, EINVAL, "cgroup parent `%s`", parent);
    strcpy(buf, parent);
    for (char *save = NULL, *c = strtok_r(buf, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (!name_ok(c, 64))
            return sbx__error(err, EINVAL, "cgroup parent `%s`", parent);
    }
    if (parent[0] == '/' || parent[0] == '\0' || strstr(parent, "//") ||
        parent[strlen(parent) - 1] == '/')
        return sbx__error(err, EINVAL, "cgroup parent `%s`", parent);
    *ret_parent = parent;
    return 0;
}

static bool list_has(const char *list, const char *item)
{
    size_t n = strlen(item);

    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);

        if (len == n && !strncmp(p, item, n))
            return true;
        p = end ? end + 1 : NULL;
    }
    return false;
}

int sbx__cgroup_own_path(const char *controller, char **ret, sbx_error *err)
{
    _cleanup_free_ char *line = NULL;
    size_t cap = 0;
    FILE *f = fopen("/proc/self/cgroup", "re");

    if (!f)
        return sbx__error(err, errno, "open `/proc/self/cgroup`");
    while (getline(&line, &cap, f) > 0) {
        char *ctrls, *path;

        line[strcspn(line, "\n")] = '\0';
        ctrls = strchr(line, ':');
        if (!ctrls)
            continue;
        *ctrls++ = '\0';
        path = strchr(ctrls, ':');
        if (!path)
            continue;
        *path++ = '\0';
        if (controller ? list_has(ctrls, controller) : (!strcmp(line, "0") && !*ctrls)) {
            char *dup = strdup(path);

            fclose(f);
            if (!dup)
                return sbx__error(err, ENOMEM, "own cgroup");
            *ret = dup;
            return 0;
        }
    }
    fclose(f);
    return sbx__error(err, ENOENT, "no `%s` hierarchy in `/proc/self/cgroup`",
                      controller ? controller : "cgroup2");
}

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static int v1_own_dir_uncached(const char *controller, char **ret, sbx_error *err);

/* Where our own cgroup of a v1 controller is mounted does not change while we
 * run, and finding it reads two /proc files: remember the answer for each
 * controller, per process (a forked child has its own copy and its own pid). */
/* Cached per controller: finding the hierarchy means reading all of
 * mountinfo.  A fork (a zygote's monitor) keeps its parent's entries while
 * /proc/self/cgroup still names the same cgroup: one small read, not a
 * mountinfo parse per controller per process. */
int sbx__cgroup_v1_own_dir(const char *controller, char **ret, sbx_error *err)
{
    static struct {
        pid_t pid;
        char controller[32];
        char *own; /* /proc/self/cgroup's path when it was found */
        char *dir; /* NULL: not mounted */
    } cache[16];
    static size_t n_cache;
    pid_t self = getpid();
    char *dir = NULL, *own = NULL;
    int r;

    for (size_t i = 0; i < n_cache; i++) {
        if (strcmp(cache[i].controller, controller))
            continue;
        if (cache[i].pid != self) {
            _cleanup_free_ char *now = NULL;
            if (!cache[i].own || sbx__cgroup_own_path(controller, &now, NULL) < 0 ||
                strcmp(now, cache[i].own))
                break; /* another cgroup's: found again below */
            cache[i].pid = self;
        }
        if (!cache[i].dir)
            return -ENOENT;
        *ret = strdup(cache[i].dir);
        return *ret ? 0 : sbx__error(err, ENOMEM, "cgroup path");
    }
    r = v1_own_dir_uncached(controller, &dir, err);
    if ((r == 0 || r == -ENOENT) && strlen(controller) < sizeof(cache[0].controller) &&
        sbx__cgroup_own_path(controller, &own, NULL) == 0) {
        size_t slot = n_cache;

        for (size_t i = 0; i < n_cache; i++)
            if (!strcmp(cache[i].controller, controller))
                slot = i;
        if (slot == n_cache && n_cache < SBX_ARRAY_SIZE(cache))
            n_cache++;
        if (slot < SBX_ARRAY_SIZE(cache)) {
            free(cache[slot].dir);
            free(cache[slot].own);
            cache[slot].pid = self;
            strcpy(cache[slot].controller, controller);
            cache[slot].own = own;
            own = NULL;
            cache[slot].dir = dir ? strdup(dir) : NULL;
            if (dir && !cache[slot].dir)
                cache[slot].controller[0] = '\0';
        }
    }
    free(own);
    if (r < 0)
        return r;
    *ret = dir;
    return 0;
}

static void unescape_octal(char *s)
{
    char *w = s;

    for (char *r = s; *r;) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
            r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)(((r[1] - '0') << 6) | ((r[2] - '0') << 3) | (r[3] - '0'));
            r += 4;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
}

static int v1_own_dir_uncached(const char *controller, char **ret, sbx_error *err)
{
    _cleanup_free_ char *own = NULL;
    _cleanup_free_ char *line = NULL;
    size_t cap = 0;
    FILE *f;
    int r;

    r = sbx__cgroup_own_path(controller, &own, NULL);
    if (r < 0)
        return r == -ENOENT ? -ENOENT : sbx__error(err, -r, "own `%s` cgroup", controller);
    f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return sbx__error(err, errno, "open `/proc/self/mountinfo`");
    while (getline(&line, &cap, f) > 0) {
        char *fields[6], *sep, *save = NULL, *fstype, *superopts;
        size_t n = 0, rootlen;

        line[strcspn(line, "\n")] = '\0';
        sep = strstr(line, " - ");
        if (!sep)
            continue;
        *sep = '\0';
        for (char *t = strtok_r(line, " ", &save); t && n < SBX_ARRAY_SIZE(fields);
             t = strtok_r(NULL, " ", &save))
            fields[n++] = t;
        if (n < 5)
            continue;
        save = NULL;
        fstype = strtok_r(sep + 3, " ", &save);
        (void)strtok_r(NULL, " ", &save); /* source */
        superopts = strtok_r(NULL, " ", &save);
        if (!fstype || !superopts || strcmp(fstype, "cgroup") || !list_has(superopts, controller))
            continue;
        /* fields[3] is the root of the hierarchy that this mount shows; our
         * own path must lie beneath it (a container may see only a subtree). */
        unescape_octal(fields[3]);
        unescape_octal(fields[4]);
        rootlen = strlen(fields[3]);
        if (!strcmp(fields[3], "/"))
            rootlen = 0;
        else if (strncmp(own, fields[3], rootlen) || (own[rootlen] && own[rootlen] != '/'))
            continue;
        fclose(f);
        return sbx__cgroup_join(fields[4], own + rootlen, NULL, ret, err);
    }
    fclose(f);
    return -ENOENT;
}

int sbx__cgroup_join(const char *base, const char *own, const char *rest, char **ret,
                     sbx_error *err)
{
    size_t blen = strlen(base), olen;
    char *s;

    while (blen > 1 && base[blen - 1] == '/')
        blen--;
    while (*own == '/')
        own++;
    olen = strlen(own);
    while (olen > 0 && own[olen - 1] == '/')
        olen--;
    if (asprintf(&s, "%.*s%s%.*s%s%s", (int)blen, base, olen ? "/" : "", (int)olen, own,
                 rest ? "/" : "", rest ? rest : "") < 0)
        return sbx__error(err, ENOMEM, "cgroup path under `%s`", base);
    if (strlen(s) >= PATH_MAX) {
        free(s);
        return sbx__error(err, ENAMETOOLONG, "cgroup path under `%s`", base);
    }
    *ret = s;
    return 0;
}

static int file_path(char *buf, size_t size, const char *dir, const char *file, sbx_error *err)
{
    int n = snprintf(buf, size, "%s/%s", dir, file);

    if (n < 0 || (size_t)n >= size)
        return sbx__error(err, ENAMETOOLONG, "cgroup file `%s` in `%s`", file, dir);
    return 0;
}

int sbx__cgroup_write(const char *dir, const char *file, const char *value, sbx_error *err)
{
    char path[PATH_MAX];
    int r = file_path(path, sizeof(path), dir, file, err);

    return r < 0 ? r : sbx__write_file(path, value, err);
}

/* A limit file that is missing means the kernel lacks the feature (e.g. no
 * CFS bandwidth control): the limit cannot be enforced, so refuse. */
int sbx__cgroup_write_limit(const char *dir, const char *file, const char *value, sbx_error *err)
{
    int r = sbx__cgroup_write(dir, file, value, err);

    if (r == -ENOENT)
        return sbx__error(err, EOPNOTSUPP, "cgroup `%s/%s` is missing: limit not supported", dir,
                          file);
    return r;
}

int sbx__cgroup_join_self(const int *fds, size_t n, sbx_error *err)
{
    for (size_t i = 0; i < n; i++)
        if (write(fds[i], "0", 1) != 1)
            return sbx__error(err, errno, "join the sandbox's cgroup");
    return 0;
}

int sbx__cgroup_read(const char *dir, const char *file, char *buf, size_t size, sbx_error *err)
{
    char path[PATH_MAX];
    int r = file_path(path, sizeof(path), dir, file, err);

    return r < 0 ? r : sbx__read_file_at(AT_FDCWD, path, buf, size, err);
}

bool sbx__cgroup_file_exists(const char *dir, const char *file)
{
    char path[PATH_MAX];

    return file_path(path, sizeof(path), dir, file, NULL) == 0 && access(path, F_OK) == 0;
}

static int parse_u64(const char *s, uint64_t *ret)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s || (*end && *end != '\n' && *end != ' '))
        return -EINVAL;
    *ret = v;
    return 0;
}

int sbx__cgroup_read_u64(const char *dir, const char *file, uint64_t *ret, sbx_error *err)
{
    char buf[64];
    int r = sbx__cgroup_read(dir, file, buf, sizeof(buf), err);

    if (r < 0)
        return r;
    if (parse_u64(buf, ret) < 0)
        return sbx__error(err, EINVAL, "parse `%s/%s`", dir, file);
    return 0;
}

int sbx__cgroup_read_key(const char *dir, const char *file, const char *key, uint64_t *ret,
                         sbx_error *err)
{
    char buf[4096];
    size_t klen = strlen(key);
    int r = sbx__cgroup_read(dir, file, buf, sizeof(buf), err);

    if (r < 0)
        return r;
    for (char *line = buf; line && *line;) {
        char *next = strchr(line, '\n');

        if (next)
            *next++ = '\0';
        if (!strncmp(line, key, klen) && line[klen] == ' ') {
            if (parse_u64(line + klen + 1, ret) < 0)
                return sbx__error(err, EINVAL, "parse `%s` in `%s/%s`", key, dir, file);
            return 0;
        }
        line = next;
    }
    return -ENOENT;
}

static int kill_listed(const char *dir, int depth, sbx_error *err)
{
    _cleanup_free_ char *procs = NULL;
    _cleanup_closedir_ DIR *d = NULL;
    char path[PATH_MAX];
    struct dirent *de;
    FILE *f;
    int n = 0, r;

    if (depth > CGROUP_MAX_DEPTH)
        return sbx__error(err, ELOOP, "cgroup `%s`: nested too deep", dir);
    r = file_path(path, sizeof(path), dir, "cgroup.procs", err);
    if (r < 0)
        return r;
    f = fopen(path, "re");
    if (!f)
        return errno == ENOENT ? 0 : sbx__error(err, errno, "open `%s`", path);
    for (long pid; fscanf(f, "%ld", &pid) == 1;) {
        /* A pid of ours (or 0) would mean we had been moved into the
         * sandbox's cgroup; never signal ourselves or our process group. */
        if (pid > 0 && pid != (long)getpid())
            (void)kill((pid_t)pid, SIGKILL);
        n++;
    }
    fclose(f);

    d = opendir(dir);
    if (!d)
        return errno == ENOENT ? n : sbx__error(err, errno, "open `%s`", dir);
    while ((de = readdir(d))) {
        _cleanup_free_ char *sub = NULL;

        if (de->d_type != DT_DIR || !strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (asprintf(&sub, "%s/%s", dir, de->d_name) < 0)
            return sbx__error(err, ENOMEM, "cgroup `%s`", dir);
        r = kill_listed(sub, depth + 1, err);
        if (r < 0)
            return r;
        n += r;
    }
    return n;
}

int sbx__cgroup_kill_listed(const char *dir, sbx_error *err)
{
    return kill_listed(dir, 0, err);
}

/* Removes dir and the cgroups beneath it, deepest first.  Returns -EBUSY
 * while a cgroup still has (exiting) processes, which callers retry. */
static int rmdir_tree(const char *dir, int depth, sbx_error *err)
{
    _cleanup_closedir_ DIR *d = NULL;
    struct dirent *de;
    int r;

    if (depth > CGROUP_MAX_DEPTH)
        return sbx__error(err, ELOOP, "cgroup `%s`: nested too deep", dir);
    d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : sbx__error(err, errno, "open `%s`", dir);
    while ((de = readdir(d))) {
        _cleanup_free_ char *sub = NULL;

        if (de->d_type != DT_DIR || !strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (asprintf(&sub, "%s/%s", dir, de->d_name) < 0)
            return sbx__error(err, ENOMEM, "cgroup `%s`", dir);
        r = rmdir_tree(sub, depth + 1, err);
        if (r < 0)
            return r;
    }
    if (rmdir(dir) < 0 && errno != ENOENT)
        return sbx__error(err, errno, "rmdir `%s`", dir);
    return 0;
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Killing is asynchronous: a SIGKILLed process stays listed until it has
 * exited, and rmdir fails with EBUSY until then.  So kill, then poll with
 * short sleeps, killing again now and then in case something was missed,
 * within a bound so that a process stuck in the kernel cannot hang us. */
int sbx__cgroup_teardown(struct sbx__cgroup *cg,
                         int (*kill_fn)(struct sbx__cgroup *cg, sbx_error *err), sbx_error *err)
{
    uint64_t deadline = now_ms() + CGROUP_DRAIN_TIMEOUT_MS;
    const struct timespec pause = {.tv_sec = 0, .tv_nsec = 5 * 1000 * 1000};

    for (unsigned round = 0;; round++) {
        bool busy = false;
        int r;

        /* A sandbox that has already ended leaves empty cgroups: try to
         * remove them before paying for a freeze-and-kill. */
        if (round % 20 == 1) {
            r = kill_fn(cg, err);
            if (r < 0)
                return r;
        }
        for (size_t i = 0; i < cg->n_dirs; i++) {
            r = rmdir_tree(cg->dirs[i], 0, err);
            if (r == -EBUSY)
                busy = true;
            else if (r < 0)
                return r;
        }
        if (!busy)
            return 0;
        if (now_ms() > deadline) {
            for (size_t i = 0; i < cg->n_dirs; i++) {
                if (access(cg->dirs[i], F_OK) == 0)
                    return sbx__error(err, EBUSY, "cgroup `%s` still busy after %d ms", cg->dirs[i],
                                      CGROUP_DRAIN_TIMEOUT_MS);
            }
            return sbx__error(err, EBUSY, "cgroup still busy after %d ms", CGROUP_DRAIN_TIMEOUT_MS);
        }
        if (round > 0)
            nanosleep(&pause, NULL);
    }
}

int sbx__cgroup_destroy(struct sbx__cgroup *cg,
                        int (*kill_fn)(struct sbx__cgroup *cg, sbx_error *err), sbx_error *err)
{
    int r;

    if (!cg)
        return 0;
    r = sbx__cgroup_teardown(cg, kill_fn, err);
    sbx__cgroup_free(cg);
    return r;
}

struct sbx__cgroup *sbx__cgroup_new(const struct sbx__cgroup_ops *ops)
{
    struct sbx__cgroup *cg = calloc(1, sizeof(*cg));

    if (cg) {
        cg->ops = ops;
        cg->oom_fd = -1;
        cg->clone_fd = -1;
    }
    return cg;
}

void sbx__cgroup_free(struct sbx__cgroup *cg)
{
    if (!cg)
        return;
    for (size_t i = 0; i < cg->n_dirs; i++)
        free(cg->dirs[i]);
    if (cg->oom_fd >= 0)
        close(cg->oom_fd);
    if (cg->clone_fd >= 0)
        close(cg->clone_fd);
    free(cg);
}
