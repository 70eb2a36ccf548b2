/* cgroup-v2.c — the cgroup v2 backend: one directory,
 * <root>/<our own cgroup>/<parent>/<id>, with memory, pids and cpu enabled
 * for it when the host offers them.
 *
 * The OOM fd is memory.events opened read-only: kernfs wakes poll() with
 * POLLPRI|POLLERR whenever the file changes (it always reports POLLIN too,
 * so poll for POLLPRI), and the count to look at is stats' oom_kills.
 * Whoever polls it must re-read the file (pread at 0) to re-arm it. */
#include "internal.h"

#include <fcntl.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>

#define DEFAULT_ROOT      "/sys/fs/cgroup"
#define SUPERVISOR        "supervisor"
#define FREEZE_TIMEOUT_MS 1000
#define MOVE_ROUNDS       100

static const char *v2_root = DEFAULT_ROOT;

void sbx__cgroup_v2_set_root(const char *root)
{
    v2_root = root ? root : DEFAULT_ROOT;
}

static void cgroup_freep(struct sbx__cgroup **cg)
{
    sbx__cgroup_free(*cg);
}
#define _cleanup_cgroup_ __attribute__((cleanup(cgroup_freep)))

static const struct {
    const char *name;
    unsigned bit;
} controllers[] = {
    {"memory", SBX__CG_MEMORY},
    {"pids", SBX__CG_PIDS},
    {"cpu", SBX__CG_CPU},
};

/* Our own cgroup's directory.  Once we have moved ourselves into
 * <own>/supervisor (see enable_controllers) /proc/self/cgroup names that;
 * the sandboxes still belong beside it, under <own>. */
static int own_dir(char **ret, sbx_error *err)
{
    _cleanup_free_ char *own = NULL;
    struct statfs sfs;
    size_t len;
    int r;

    if (statfs(v2_root, &sfs) < 0)
        return sbx__error(err, errno, "statfs `%s`", v2_root);
    if (sfs.f_type != CGROUP2_SUPER_MAGIC)
        return sbx__error(err, EOPNOTSUPP, "`%s` is not a cgroup2 mount", v2_root);
    r = sbx__cgroup_own_path(NULL, &own, err);
    if (r < 0)
        return r;
    len = strlen(own);
    if (len >= sizeof(SUPERVISOR) && !strcmp(own + len - (sizeof(SUPERVISOR) - 1), SUPERVISOR) &&
        own[len - sizeof(SUPERVISOR)] == '/')
        own[len - sizeof(SUPERVISOR)] = '\0';
    return sbx__cgroup_join(v2_root, own, NULL, ret, err);
}

/* The controllers (SBX__CG_* bits) named in a space-separated list file. */
static int read_controllers(const char *dir, const char *file, unsigned *ret, sbx_error *err)
{
    char buf[1024];
    unsigned mask = 0;
    char *save = NULL;
    int r = sbx__cgroup_read(dir, file, buf, sizeof(buf), err);

    if (r < 0)
        return r;
    for (char *t = strtok_r(buf, " \n", &save); t; t = strtok_r(NULL, " \n", &save)) {
        for (size_t c = 0; c < SBX_ARRAY_SIZE(controllers); c++) {
            if (!strcmp(t, controllers[c].name))
                mask |= controllers[c].bit;
        }
    }
    *ret = mask;
    return 0;
}

static void format_enable(char *buf, size_t size, unsigned mask)
{
    buf[0] = '\0';
    for (size_t c = 0; c < SBX_ARRAY_SIZE(controllers); c++) {
        if (mask & controllers[c].bit) {
            size_t len = strlen(buf);
            snprintf(buf + len, size - len, "%s+%s", len ? " " : "", controllers[c].name);
        }
    }
}

/* Moves every process of our own cgroup into <own>/supervisor, as systemd's
 * Delegate=yes services do: v2 lets a cgroup hand controllers to its
 * children only while it has no processes of its own. */
static int move_to_supervisor(const char *own, sbx_error *err)
{
    _cleanup_free_ char *sup = NULL;
    int r;

    r = sbx__cgroup_join(own, "", SUPERVISOR, &sup, err);
    if (r < 0)
        return r;
    if (mkdir(sup, 0755) < 0 && errno != EEXIST)
        return sbx__error(err, errno, "mkdir `%s`", sup);
    for (int round = 0; round < MOVE_ROUNDS; round++) {
        char procs[8192];
        char *save = NULL;
        int moved = 0;

        r = sbx__cgroup_read(own, "cgroup.procs", procs, sizeof(procs), err);
        if (r < 0)
            return r;
        for (char *t = strtok_r(procs, "\n", &save); t; t = strtok_r(NULL, "\n", &save)) {
            r = sbx__cgroup_write(sup, "cgroup.procs", t, err);
            /* ESRCH: it exited meanwhile. */
            if (r < 0 && r != -ESRCH)
                return r;
            moved++;
        }
        if (moved == 0)
            return 0;
    }
    return sbx__error(err, EBUSY, "`%s` keeps gaining processes", own);
}

static int enable_in(const char *dir, unsigned mask, sbx_error *err)
{
    char buf[64];
    unsigned have;
    int r = read_controllers(dir, "cgroup.subtree_control", &have, err);

    if (r < 0)
        return r;
    if ((mask & ~have) == 0)
        return 0;
    format_enable(buf, sizeof(buf), mask & ~have);
    return sbx__cgroup_write(dir, "cgroup.subtree_control", buf, err);
}

/* Enables mask in <own> and in each level of <own>/<parent>, creating those. */
static int enable_controllers(const char *own, const char *parent, unsigned mask, sbx_error *err)
{
    char rel[256];
    int r;

    r = enable_in(own, mask, err);
    if (r == -EBUSY) {
        r = move_to_supervisor(own, err);
        if (r < 0)
            return r;
        r = enable_in(own, mask, err);
    }
    if (r < 0)
        return r;
    snprintf(rel, sizeof(rel), "%s", parent);
    for (char *p = rel;; p++) {
        if (*p == '/' || *p == '\0') {
            _cleanup_free_ char *dir = NULL;
            char saved = *p;

            *p = '\0';
            r = sbx__cgroup_join(own, "", rel, &dir, err);
            *p = saved;
            if (r < 0)
                return r;
            if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return sbx__error(err, errno, "mkdir `%s`", dir);
            r = enable_in(dir, mask, err);
            if (r < 0)
                return r;
            if (saved == '\0')
                return 0;
        }
    }
}

static int apply_limits(const char *dir, const struct sbx_limits *lim, sbx_error *err)
{
    char buf[64];
    int r;

    if (lim->memory_bytes) {
        snprintf(buf, sizeof(buf), "%" PRIu64, lim->memory_bytes);
        r = sbx__cgroup_write_limit(dir, "memory.max", buf, err);
        if (r < 0)
            return r;
        /* No swap: it would let the sandbox run past its limit. */
        if (sbx__cgroup_file_exists(dir, "memory.swap.max")) {
            r = sbx__cgroup_write_limit(dir, "memory.swap.max", "0", err);
            if (r < 0)
                return r;
        }
    }
    /* An OOM kill takes the whole sandbox, not one arbitrary process of it. */
    if (sbx__cgroup_file_exists(dir, "memory.oom.group")) {
        r = sbx__cgroup_write_limit(dir, "memory.oom.group", "1", err);
        if (r < 0)
            return r;
    }
    if (lim->pids_max) {
        snprintf(buf, sizeof(buf), "%" PRId64, lim->pids_max);
        r = sbx__cgroup_write_limit(dir, "pids.max", buf, err);
        if (r < 0)
            return r;
    }
    if (lim->cpu_weight) {
        snprintf(buf, sizeof(buf), "%" PRIu64, lim->cpu_weight);
        r = sbx__cgroup_write_limit(dir, "cpu.weight", buf, err);
        if (r < 0)
            return r;
    }
    if (lim->cpu_quota_us) {
        snprintf(buf, sizeof(buf), "%" PRIu64 " %" PRIu64, lim->cpu_quota_us,
                 lim->cpu_period_us ? lim->cpu_period_us : 100000);
        r = sbx__cgroup_write_limit(dir, "cpu.max", buf, err);
        if (r < 0)
            return r;
    }
    return 0;
}

static int v2_create(const char *parent, const char *id, const struct sbx_limits *lim,
                     struct sbx__cgroup **ret, sbx_error *err)
{
    static const struct sbx_limits none;
    _cleanup_cgroup_ struct sbx__cgroup *cg = NULL;
    _cleanup_free_ char *own = NULL;
    _cleanup_free_ char *rest = NULL;
    _cleanup_free_ char *dir = NULL;
    unsigned required = 0, available, wanted;
    char *slash;
    int r;

    r = sbx__cgroup_check_names(parent, id, &parent, err);
    if (r < 0)
        return r;
    if (!strncmp(parent, SUPERVISOR, sizeof(SUPERVISOR) - 1) &&
        (parent[sizeof(SUPERVISOR) - 1] == '\0' || parent[sizeof(SUPERVISOR) - 1] == '/'))
        return sbx__error(err, EINVAL, "cgroup parent `%s` is reserved", parent);
    if (!lim)
        lim = &none;
    if (lim->pids_max < 0 || lim->cpu_weight > 10000)
        return sbx__error(err, EINVAL,
                          "cgroup limits for `%s`: pids_max %" PRId64 ", cpu_weight %" PRIu64, id,
                          lim->pids_max, lim->cpu_weight);
    if (lim->memory_bytes)
        required |= SBX__CG_MEMORY;
    if (lim->pids_max)
        required |= SBX__CG_PIDS;
    if (lim->cpu_weight || lim->cpu_quota_us)
        required |= SBX__CG_CPU;

    r = own_dir(&own, err);
    if (r < 0)
        return r;
    r = read_controllers(own, "cgroup.controllers", &available, err);
    if (r < 0)
        return r;
    for (size_t c = 0; c < SBX_ARRAY_SIZE(controllers); c++) {
        if ((required & controllers[c].bit) && !(available & controllers[c].bit))
            return sbx__error(err, EOPNOTSUPP,
                              "cgroup v2 controller `%s` is not available in `%s` "
                              "(a limit needs it)",
                              controllers[c].name, own);
    }
    /* Enable what is there even without limits: it gives the stats. */
    wanted = available;

    if (asprintf(&rest, "%s/%s", parent, id) < 0)
        return sbx__error(err, ENOMEM, "cgroup path");
    r = sbx__cgroup_join(own, "", rest, &dir, err);
    if (r < 0)
        return r;
    if (wanted) {
        r = enable_controllers(own, parent, wanted, err);
    } else {
        slash = strrchr(dir, '/');
        *slash = '\0';
        r = sbx__mkdir_p(dir, 0755, err);
        *slash = '/';
    }
    if (r < 0)
        return r;
    if (mkdir(dir, 0755) < 0)
        return sbx__error(err, errno, "mkdir `%s`", dir);

    cg = sbx__cgroup_new(&sbx__cgroup_v2_ops);
    if (!cg) {
        (void)rmdir(dir);
        return sbx__error(err, ENOMEM, "cgroup `%s`", id);
    }
    cg->controllers[0] = wanted;
    cg->dirs[cg->n_dirs++] = steal_pointer(&dir);
    r = apply_limits(cg->dirs[0], lim, err);
    if (r >= 0) {
        cg->clone_fd = open(cg->dirs[0], O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (cg->clone_fd < 0)
            r = sbx__error(err, errno, "open `%s`", cg->dirs[0]);
    }
    if (r >= 0 && lim->memory_bytes) {
        char path[4096];

        snprintf(path, sizeof(path), "%s/memory.events", cg->dirs[0]);
        cg->oom_fd = open(path, O_RDONLY | O_CLOEXEC);
        if (cg->oom_fd < 0)
            r = sbx__error(err, errno, "open `%s`", path);
    }
    if (r < 0) {
        (void)rmdir(cg->dirs[0]);
        return r;
    }
    *ret = steal_pointer(&cg);
    return 0;
}

/* cgroup2 has no per-thread move between domain cgroups: processes are
 * born in the cgroup instead (clone_fd), or moved with cgroup.procs. */
static int v2_open_self_attach(struct sbx__cgroup *cg, int *fds, size_t max, sbx_error *err)
{
    (void)cg, (void)fds, (void)max, (void)err;
    return 0;
}

static int v2_attach(struct sbx__cgroup *cg, pid_t pid, sbx_error *err)
{
    char buf[32];

    snprintf(buf, sizeof(buf), "%d", (int)pid);
    return sbx__cgroup_write(cg->dirs[0], "cgroup.procs", buf, err);
}

static int v2_update(struct sbx__cgroup *cg, const struct sbx_limits *lim, sbx_error *err)
{
    return apply_limits(cg->dirs[0], lim, err);
}

static int v2_oom_fd(struct sbx__cgroup *cg)
{
    return cg->oom_fd;
}

static int v2_stats(struct sbx__cgroup *cg, struct sbx_stats *ret, sbx_error *err)
{
    const char *dir = cg->dirs[0];
    struct sbx_stats s = {0};
    uint64_t usec = 0;
    int r;

    /* cpu.stat's usage_usec is there without the cpu controller. */
    r = sbx__cgroup_read_key(dir, "cpu.stat", "usage_usec", &usec, err);
    if (r < 0 && r != -ENOENT)
        return r;
    s.cpu_usage_ns = usec * 1000;
    if (sbx__cgroup_file_exists(dir, "memory.current")) {
        r = sbx__cgroup_read_u64(dir, "memory.current", &s.memory_current, err);
        if (r < 0)
            return r;
    }
    if (sbx__cgroup_file_exists(dir, "memory.peak")) {
        r = sbx__cgroup_read_u64(dir, "memory.peak", &s.memory_peak, err);
        if (r < 0)
            return r;
    }
    if (sbx__cgroup_file_exists(dir, "memory.events")) {
        r = sbx__cgroup_read_key(dir, "memory.events", "oom_kill", &s.oom_kills, err);
        if (r < 0 && r != -ENOENT)
            return r;
    }
    if (sbx__cgroup_file_exists(dir, "pids.current")) {
        r = sbx__cgroup_read_u64(dir, "pids.current", &s.pids_current, err);
        if (r < 0)
            return r;
    }
    *ret = s;
    return 0;
}

static bool frozen(const char *dir)
{
    uint64_t v = 0;

    return sbx__cgroup_read_key(dir, "cgroup.events", "frozen", &v, NULL) == 0 && v == 1;
}

/* cgroup.kill (Linux 5.14) kills the whole subtree atomically.  Before it,
 * freeze so that nothing forks between reading cgroup.procs and the kill;
 * v2 lets SIGKILL through to frozen processes. */
static int v2_kill(struct sbx__cgroup *cg, sbx_error *err)
{
    const char *dir = cg->dirs[0];
    const struct timespec pause = {.tv_sec = 0, .tv_nsec = 1000 * 1000};
    int r, t;

    if (access(dir, F_OK) < 0)
        return 0;
    r = sbx__cgroup_write(dir, "cgroup.kill", "1", NULL);
    if (r != -ENOENT && r != -EINVAL)
        return r < 0 ? sbx__error(err, -r, "write `1` to `%s/cgroup.kill`", dir) : 0;

    r = sbx__cgroup_write(dir, "cgroup.freeze", "1", err);
    if (r < 0)
        return r;
    for (int i = 0; i < FREEZE_TIMEOUT_MS && !frozen(dir); i++)
        nanosleep(&pause, NULL);
    r = sbx__cgroup_kill_listed(dir, err);
    t = sbx__cgroup_write(dir, "cgroup.freeze", "0", r < 0 ? NULL : err);
    if (r >= 0 && t < 0 && t != -ENOENT)
        r = t;
    return r < 0 ? r : 0;
}

static int v2_destroy(struct sbx__cgroup *cg, sbx_error *err)
{
    return sbx__cgroup_destroy(cg, v2_kill, err);
}

static int v2_remove(const char *parent, const char *id, sbx_error *err)
{
    _cleanup_cgroup_ struct sbx__cgroup *cg = NULL;
    _cleanup_free_ char *own = NULL;
    _cleanup_free_ char *rest = NULL;
    int r;

    r = sbx__cgroup_check_names(parent, id, &parent, err);
    if (r < 0)
        return r;
    r = own_dir(&own, err);
    if (r < 0)
        return r;
    cg = sbx__cgroup_new(&sbx__cgroup_v2_ops);
    if (!cg)
        return sbx__error(err, ENOMEM, "cgroup `%s`", id);
    if (asprintf(&rest, "%s/%s", parent, id) < 0)
        return sbx__error(err, ENOMEM, "cgroup path");
    r = sbx__cgroup_join(own, "", rest, &cg->dirs[0], err);
    if (r < 0)
        return r;
    cg->n_dirs = 1;
    return sbx__cgroup_teardown(cg, v2_kill, err);
}

static int v2_prune(const char *parent, sbx_error *err)
{
    _cleanup_free_ char *own = NULL, *dir = NULL;
    int r = sbx__cgroup_check_names(parent, "x", &parent, err);

    if (r < 0)
        return r;
    r = own_dir(&own, err);
    if (r < 0)
        return r;
    r = sbx__cgroup_join(own, "", parent, &dir, err);
    if (r < 0)
        return r;
    if (rmdir(dir) < 0 && errno != ENOENT)
        return sbx__error(err, errno, "remove cgroup parent `%s`", dir);
    return 0;
}

const struct sbx__cgroup_ops sbx__cgroup_v2_ops = {
    .name = "v2",
    .create = v2_create,
    .clone_into = true,
    .attach = v2_attach,
    .open_self_attach = v2_open_self_attach,
    .oom_fd = v2_oom_fd,
    .update = v2_update,
    .stats = v2_stats,
    .kill = v2_kill,
    .destroy = v2_destroy,
    .remove = v2_remove,
    .prune = v2_prune,
};
