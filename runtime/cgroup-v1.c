/* cgroup-v1.c — the cgroup v1 backend: one directory per hierarchy (memory,
 * pids, cpu, cpuacct, freezer; co-mounted controllers share one), each at
 * <mount>/<our own cgroup there>/<parent>/<id>.
 *
 * cpuset is deliberately left alone: a new cpuset cgroup starts with empty
 * cpuset.cpus/mems and refuses tasks until they are copied from its parent,
 * and the sandbox gains nothing from it. */
#include "internal.h"

#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <time.h>

#define FREEZE_TIMEOUT_MS 1000

static const struct {
    const char *name;
    unsigned bit;
} controllers[] = {
    {"memory", SBX__CG_MEMORY},   {"pids", SBX__CG_PIDS},       {"cpu", SBX__CG_CPU},
    {"cpuacct", SBX__CG_CPUACCT}, {"freezer", SBX__CG_FREEZER},
};

/* Finds every controller's hierarchy now, for this process and its forks
 * (sbx_prepare()). */
void sbx__cgroup_v1_warm(void)
{
    for (size_t c = 0; c < SBX_ARRAY_SIZE(controllers); c++) {
        char *own = NULL;
        if (sbx__cgroup_v1_own_dir(controllers[c].name, &own, NULL) == 0)
            free(own);
    }
}

static void cgroup_freep(struct sbx__cgroup **cg)
{
    sbx__cgroup_free(*cg);
}
#define _cleanup_cgroup_ __attribute__((cleanup(cgroup_freep)))

/* Fills cg->dirs with <own dir>/<parent>/<id> of every mounted hierarchy we
 * use, one entry per hierarchy.  Fails with -EOPNOTSUPP, naming the
 * controller, when a controller in `required` is not mounted. */
static int collect_dirs(struct sbx__cgroup *cg, const char *parent, const char *id,
                        unsigned required, sbx_error *err)
{
    for (size_t c = 0; c < SBX_ARRAY_SIZE(controllers); c++) {
        _cleanup_free_ char *own = NULL;
        _cleanup_free_ char *rest = NULL;
        _cleanup_free_ char *dir = NULL;
        size_t i;
        int r;

        r = sbx__cgroup_v1_own_dir(controllers[c].name, &own, err);
        if (r == -ENOENT) {
            if (required & controllers[c].bit)
                return sbx__error(err, EOPNOTSUPP,
                                  "cgroup v1 controller `%s` is not mounted (a limit needs it)",
                                  controllers[c].name);
            continue;
        }
        if (r < 0)
            return r;
        if (asprintf(&rest, "%s/%s", parent, id) < 0)
            return sbx__error(err, ENOMEM, "cgroup path");
        r = sbx__cgroup_join(own, "", rest, &dir, err);
        if (r < 0)
            return r;
        for (i = 0; i < cg->n_dirs; i++) {
            if (!strcmp(cg->dirs[i], dir))
                break;
        }
        if (i == cg->n_dirs) {
            if (cg->n_dirs == SBX__CGROUP_MAX_DIRS)
                return sbx__error(err, E2BIG, "too many cgroup hierarchies");
            cg->dirs[cg->n_dirs++] = steal_pointer(&dir);
        }
        cg->controllers[i] |= controllers[c].bit;
    }
    if (cg->n_dirs == 0)
        return sbx__error(err, EOPNOTSUPP, "no cgroup v1 controller is mounted");
    return 0;
}

static const char *dir_of(const struct sbx__cgroup *cg, unsigned bit)
{
    for (size_t i = 0; i < cg->n_dirs; i++) {
        if (cg->controllers[i] & bit)
            return cg->dirs[i];
    }
    return NULL;
}

static int apply_limits(struct sbx__cgroup *cg, const struct sbx_limits *lim, sbx_error *err)
{
    char buf[32];
    const char *dir;
    int r;

    if (lim->memory_bytes) {
        dir = dir_of(cg, SBX__CG_MEMORY);
        snprintf(buf, sizeof(buf), "%" PRIu64, lim->memory_bytes);
        r = sbx__cgroup_write_limit(dir, "memory.limit_in_bytes", buf, err);
        if (r < 0)
            return r;
        /* memory+swap gets the same limit, so swap cannot be used to get
         * past it.  memsw must not be below the memory limit, hence second. */
        if (sbx__cgroup_file_exists(dir, "memory.memsw.limit_in_bytes")) {
            r = sbx__cgroup_write_limit(dir, "memory.memsw.limit_in_bytes", buf, err);
            if (r < 0)
                return r;
        }
    }
    if (lim->pids_max) {
        snprintf(buf, sizeof(buf), "%" PRId64, lim->pids_max);
        r = sbx__cgroup_write_limit(dir_of(cg, SBX__CG_PIDS), "pids.max", buf, err);
        if (r < 0)
            return r;
    }
    dir = dir_of(cg, SBX__CG_CPU);
    if (lim->cpu_weight) {
        /* The v2 weight (1..10000, default 100) mapped onto v1 shares
         * (2..262144), the conversion crun and systemd use. */
        uint64_t shares = 2 + ((lim->cpu_weight - 1) * 262142) / 9999;

        snprintf(buf, sizeof(buf), "%" PRIu64, shares);
        r = sbx__cgroup_write_limit(dir, "cpu.shares", buf, err);
        if (r < 0)
            return r;
    }
    if (lim->cpu_quota_us) {
        snprintf(buf, sizeof(buf), "%" PRIu64, lim->cpu_period_us ? lim->cpu_period_us : 100000);
        r = sbx__cgroup_write_limit(dir, "cpu.cfs_period_us", buf, err);
        if (r < 0)
            return r;
        snprintf(buf, sizeof(buf), "%" PRIu64, lim->cpu_quota_us);
        r = sbx__cgroup_write_limit(dir, "cpu.cfs_quota_us", buf, err);
        if (r < 0)
            return r;
    }
    return 0;
}

static int v1_update(struct sbx__cgroup *cg, const struct sbx_limits *lim, sbx_error *err)
{
    return apply_limits(cg, lim, err);
}

/* The v1 OOM notification: an eventfd registered through cgroup.event_control
 * against memory.oom_control; the kernel signals it when the cgroup hits OOM.
 * The control file may be closed once registered. */
static int register_oom_fd(struct sbx__cgroup *cg, sbx_error *err)
{
    const char *dir = dir_of(cg, SBX__CG_MEMORY);
    _cleanup_close_ int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    _cleanup_close_ int cfd = -1;
    char path[PATH_MAX], buf[32];
    int r;

    if (efd < 0)
        return sbx__error(err, errno, "eventfd");
    snprintf(path, sizeof(path), "%s/memory.oom_control", dir);
    cfd = open(path, O_RDONLY | O_CLOEXEC);
    if (cfd < 0)
        return sbx__error(err, errno, "open `%s`", path);
    snprintf(buf, sizeof(buf), "%d %d", efd, cfd);
    r = sbx__cgroup_write(dir, "cgroup.event_control", buf, err);
    if (r < 0)
        return r;
    cg->oom_fd = steal_fd(&efd);
    return 0;
}

static int v1_create(const char *parent, const char *id, const struct sbx_limits *lim,
                     struct sbx__cgroup **ret, sbx_error *err)
{
    static const struct sbx_limits none;
    _cleanup_cgroup_ struct sbx__cgroup *cg = NULL;
    unsigned required = 0;
    size_t made = 0;
    int r;

    r = sbx__cgroup_check_names(parent, id, &parent, err);
    if (r < 0)
        return r;
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

    cg = sbx__cgroup_new(&sbx__cgroup_v1_ops);
    if (!cg)
        return sbx__error(err, ENOMEM, "cgroup `%s`", id);
    r = collect_dirs(cg, parent, id, required, err);
    if (r < 0)
        return r;
    for (; made < cg->n_dirs; made++) {
        /* The parent usually exists already (other sandboxes); the leaf
         * must not.  A one-shot caller may prune an empty parent between
         * our making it and our leaf: then make it again. */
        int rc;

        for (int attempt = 0;; attempt++) {
            char *slash;

            rc = mkdir(cg->dirs[made], 0755);
            if (rc == 0 || errno != ENOENT || attempt == 3)
                break;
            slash = strrchr(cg->dirs[made], '/');
            *slash = '\0';
            r = sbx__mkdir_p(cg->dirs[made], 0755, err);
            *slash = '/';
            if (r < 0)
                goto fail;
        }
        if (rc < 0) {
            r = sbx__error(err, errno, "mkdir `%s`", cg->dirs[made]);
            goto fail;
        }
    }
    r = apply_limits(cg, lim, err);
    if (r < 0)
        goto fail;
    if (lim->memory_bytes) {
        r = register_oom_fd(cg, err);
        if (r < 0)
            goto fail;
    }
    *ret = steal_pointer(&cg);
    return 0;

fail:
    /* Nothing is attached yet: the leaves we made are empty. */
    for (size_t i = 0; i < made; i++)
        (void)rmdir(cg->dirs[i]);
    return r;
}

/* Moving a whole process (cgroup.procs) takes the kernel's global
 * threadgroup lock for writing, which now and then waits for an RCU grace
 * period: milliseconds.  A thread moving itself ("0" into tasks) does not
 * take it; for a single-threaded process that moves the whole process. */
static int v1_attach(struct sbx__cgroup *cg, pid_t pid, sbx_error *err)
{
    bool self = pid == getpid();
    char buf[32];

    snprintf(buf, sizeof(buf), "%d", self ? 0 : (int)pid);
    for (size_t i = 0; i < cg->n_dirs; i++) {
        int r = sbx__cgroup_write(cg->dirs[i], self ? "tasks" : "cgroup.procs", buf, err);
        if (r < 0)
            return r;
    }
    return 0;
}

static int v1_open_self_attach(struct sbx__cgroup *cg, int *fds, size_t max, sbx_error *err)
{
    size_t n = 0;

    if (cg->n_dirs > max)
        return sbx__error(err, E2BIG, "%zu cgroup hierarchies", cg->n_dirs);
    for (; n < cg->n_dirs; n++) {
        char path[PATH_MAX];

        snprintf(path, sizeof(path), "%s/tasks", cg->dirs[n]);
        fds[n] = open(path, O_WRONLY | O_CLOEXEC);
        if (fds[n] < 0) {
            int r = sbx__error(err, errno, "open `%s`", path);
            while (n-- > 0)
                close(fds[n]);
            return r;
        }
    }
    return (int)n;
}

static int v1_oom_fd(struct sbx__cgroup *cg)
{
    return cg->oom_fd;
}

static int v1_stats(struct sbx__cgroup *cg, struct sbx_stats *ret, sbx_error *err)
{
    struct sbx_stats s = {0};
    const char *dir;
    int r;

    if ((dir = dir_of(cg, SBX__CG_CPUACCT))) {
        r = sbx__cgroup_read_u64(dir, "cpuacct.usage", &s.cpu_usage_ns, err);
        if (r < 0)
            return r;
    }
    if ((dir = dir_of(cg, SBX__CG_MEMORY))) {
        r = sbx__cgroup_read_u64(dir, "memory.usage_in_bytes", &s.memory_current, err);
        if (r < 0)
            return r;
        r = sbx__cgroup_read_u64(dir, "memory.max_usage_in_bytes", &s.memory_peak, err);
        if (r < 0)
            return r;
        /* oom_kill appeared in Linux 4.13; older kernels have no count. */
        r = sbx__cgroup_read_key(dir, "memory.oom_control", "oom_kill", &s.oom_kills, err);
        if (r < 0 && r != -ENOENT)
            return r;
    }
    if ((dir = dir_of(cg, SBX__CG_PIDS))) {
        r = sbx__cgroup_read_u64(dir, "pids.current", &s.pids_current, err);
        if (r < 0)
            return r;
    }
    *ret = s;
    return 0;
}

static bool frozen(const char *dir)
{
    char state[32];

    return sbx__cgroup_read(dir, "freezer.state", state, sizeof(state), NULL) >= 0 &&
           !strncmp(state, "FROZEN", 6);
}

/* Freezes the cgroup first so that no process can fork between our reading
 * cgroup.procs and signalling it; the SIGKILLs take effect on thaw, and a
 * frozen process cannot exit, so no listed pid can be reused meanwhile. */
static int v1_kill(struct sbx__cgroup *cg, sbx_error *err)
{
    const char *fdir = dir_of(cg, SBX__CG_FREEZER);
    bool freeze = fdir && access(fdir, F_OK) == 0;
    int r = 0;

    if (freeze) {
        const struct timespec pause = {.tv_sec = 0, .tv_nsec = 1000 * 1000};

        r = sbx__cgroup_write(fdir, "freezer.state", "FROZEN", err);
        if (r < 0)
            return r;
        /* A process stuck in the kernel can keep the cgroup FREEZING; then
         * kill what we can see and let the caller's drain loop retry. */
        for (int i = 0; i < FREEZE_TIMEOUT_MS && !frozen(fdir); i++)
            nanosleep(&pause, NULL);
    }
    for (size_t i = 0; i < cg->n_dirs; i++) {
        int k = sbx__cgroup_kill_listed(cg->dirs[i], err);
        if (k < 0 && r == 0)
            r = k;
    }
    if (freeze) {
        int t = sbx__cgroup_write(fdir, "freezer.state", "THAWED", err);
        if (t < 0 && t != -ENOENT && r == 0)
            r = t;
    }
    return r < 0 ? r : 0;
}

static int v1_destroy(struct sbx__cgroup *cg, sbx_error *err)
{
    return sbx__cgroup_destroy(cg, v1_kill, err);
}

static int v1_remove(const char *parent, const char *id, sbx_error *err)
{
    _cleanup_cgroup_ struct sbx__cgroup *cg = NULL;
    int r;

    r = sbx__cgroup_check_names(parent, id, &parent, err);
    if (r < 0)
        return r;
    cg = sbx__cgroup_new(&sbx__cgroup_v1_ops);
    if (!cg)
        return sbx__error(err, ENOMEM, "cgroup `%s`", id);
    r = collect_dirs(cg, parent, id, 0, err);
    if (r < 0)
        return r == -EOPNOTSUPP ? 0 : r;
    return sbx__cgroup_teardown(cg, v1_kill, err);
}

static int v1_prune(const char *parent, sbx_error *err)
{
    int r = sbx__cgroup_check_names(parent, "x", &parent, err), busy = 0;

    if (r < 0)
        return r;
    for (size_t c = 0; c < SBX_ARRAY_SIZE(controllers); c++) {
        _cleanup_free_ char *own = NULL, *dir = NULL;

        if (sbx__cgroup_v1_own_dir(controllers[c].name, &own, NULL) < 0 ||
            sbx__cgroup_join(own, "", parent, &dir, NULL) < 0)
            continue;
        if (rmdir(dir) < 0 && errno != ENOENT)
            busy = errno;
    }
    return busy ? sbx__error(err, busy, "remove cgroup parent `%s`", parent) : 0;
}

const struct sbx__cgroup_ops sbx__cgroup_v1_ops = {
    .name = "v1",
    .create = v1_create,
    .attach = v1_attach,
    .open_self_attach = v1_open_self_attach,
    .oom_fd = v1_oom_fd,
    .update = v1_update,
    .stats = v1_stats,
    .kill = v1_kill,
    .destroy = v1_destroy,
    .remove = v1_remove,
    .prune = v1_prune,
};
