/* sandbox.c — create, watch, terminate and destroy a sandbox.
 *
 * sbx_sandbox_create() clone()s the sandbox's first process into a new pid
 * namespace and (optionally) a new user namespace, and moves it to another
 * CPU; the child unshares its mount, uts, ipc (and net) namespaces while
 * the parent reserves a uid range, writes the uid/gid maps, makes the
 * directories and idmaps the layers.  The child then builds the root file
 * system while the parent makes the cgroup; last, the child joins the
 * cgroup, unshares its cgroup namespace (so its cgroup is its root), drops
 * its privileges and becomes init.  The two talk over a SOCK_SEQPACKET
 * pair:
 *
 *   parent                                 child
 *   clone3(user, pid) ─────────────────────▶ unshare(mnt, uts, ipc, net)
 *   uid range, uid/gid maps, dirs,           stdio
 *   idmapped layers
 *   GO 1 + layer fds ──────────────────────▶ setresuid 0, rootfs, hostname
 *   cgroup, its files                        (both at once, on two CPUs)
 *   GO 2 + cgroup fds ─────────────────────▶ join the cgroup (v1: itself,
 *                                            see v1_attach), unshare
 *                                            cgroupns, lo up, caps,
 *                                            no_new_privs, seccomp,
 *                                            init starts the entrypoint
 *   (waits) ◀───────────────────────────── READY once it has exec'd, or
 *                                            ERROR naming what failed
 *   ...
 *   (poll) ◀────────────────────────────── EXIT returncode, just before
 *                                            init exits
 *
 * The EXIT message lets the caller see the returncode as soon as the
 * entrypoint has exited, without waiting for the kernel to tear the
 * namespaces down; sbx_sandbox_destroy() still reaps init and waits for all
 * of it to be gone.
 */
#include "internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <linux/sched.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* Unshared by the child; user and pid come with clone3. */
#define SBX_NS_FLAGS (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET)

static bool valid_id(const char *id)
{
    size_t n = id ? strlen(id) : 0;

    if (n == 0 || n > 64 || id[0] == '.')
        return false;
    for (; *id; id++)
        if (!(*id >= 'a' && *id <= 'z') && !(*id >= 'A' && *id <= 'Z') &&
            !(*id >= '0' && *id <= '9') && *id != '.' && *id != '_' && *id != '-')
            return false;
    return true;
}

static char *path_join(const char *a, const char *b, const char *c)
{
    char *s;

    if (asprintf(&s, "%s/%s%s%s", a, b, c ? "/" : "", c ? c : "") < 0)
        return NULL;
    return s;
}

static void sandbox_free(sbx_sandbox *sb)
{
    if (!sb)
        return;
    if (sb->pidfd >= 0)
        close(sb->pidfd);
    if (sb->sync_fd >= 0)
        close(sb->sync_fd);
    free(sb->id);
    free(sb->run_root);
    free(sb->state_root);
    free(sb->run_dir);
    free(sb->state_dir);
    free(sb->upper_dir);
    free(sb->work_dir);
    free(sb->state_spare);
    free(sb->cgroup_parent);
    free(sb->rlimits);
    free(sb);
}

/* The GO message's fds: the idmapped layers, then the cgroup files the child
 * joins through. */
#define GO_MAX_FDS (SBX_MAX_LAYERS + SBX_MAX_MOUNTS + 1 + SBX__CGROUP_MAX_DIRS)

static int recv_ready(int sock, const char *id, int flags, sbx_error *err);

/* Sends a GO message and, with it, n fds: the idmapped layers, then
 * n_cgroup cgroup files.  When the child is gone, its own error (it may
 * have failed building the root file system) is the one reported. */
static int send_go(int sock, const int *fds, size_t n, int n_cgroup, const char *id, sbx_error *err)
{
    struct sbx__msg m = {.type = SBX__MSG_READY, .code = n_cgroup};
    struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
    union {
        char buf[CMSG_SPACE(sizeof(int) * GO_MAX_FDS)];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

    if (n > 0) {
        struct cmsghdr *c;

        memset(&u, 0, sizeof(u));
        mh.msg_control = u.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * n);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
    }
    while (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0)
        if (errno != EINTR) {
            int r = sbx__error(err, errno, "send setup to the sandbox");
            int child_r = recv_ready(sock, id, MSG_DONTWAIT, err);
            return child_r < 0 && child_r != -EPIPE ? child_r : r;
        }
    return 0;
}

/* Receives GO with n_layers layer fds and however many cgroup fds the
 * parent sends (*ret_n_cgroup), into fds. */
static int recv_go(int sock, int *fds, size_t n_layers, size_t *ret_n_cgroup, sbx_error *err)
{
    struct sbx__msg m;
    struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
    size_t n;
    union {
        char buf[CMSG_SPACE(sizeof(int) * GO_MAX_FDS)];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
    struct cmsghdr *c;
    ssize_t r;

    do
        r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    while (r < 0 && errno == EINTR);
    if (r != (ssize_t)sizeof(m) || m.type != SBX__MSG_READY)
        return sbx__error(err, r < 0 ? errno : EPIPE, "receive setup from the parent");
    if (m.code < 0 || m.code > SBX__CGROUP_MAX_DIRS)
        return sbx__error(err, EPROTO, "receive %d cgroup fds", m.code);
    *ret_n_cgroup = (size_t)m.code;
    n = n_layers + (size_t)m.code;
    if (n == 0)
        return 0;
    c = CMSG_FIRSTHDR(&mh);
    if (!c || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int) * n))
        return sbx__error(err, EPROTO, "receive %zu layer fds", n);
    memcpy(fds, CMSG_DATA(c), sizeof(int) * n);
    return 0;
}

/* Waits (flags 0) for the child's READY, or reports the ERROR it sent
 * instead; with MSG_DONTWAIT, only a message already there replaces *err. */
static int recv_ready(int sock, const char *id, int flags, sbx_error *err)
{
    struct sbx__msg m;
    ssize_t n;

    do
        n = recv(sock, &m, sizeof(m), flags);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof(m)) {
        if (flags & MSG_DONTWAIT)
            return -EPIPE;
        return sbx__error(err, n < 0 ? errno : EPIPE, "sandbox `%s` died during setup", id);
    }
    if (m.type != SBX__MSG_READY) {
        int r = sbx__error(err, m.code, "sandbox `%s`: %.400s", id, m.message);

        /* The message already ends with strerror(code): keep it once. */
        if (err)
            snprintf(err->message, sizeof(err->message), "sandbox `%s`: %.450s", id, m.message);
        return r;
    }
    return 0;
}

int sbx__loopback_up(sbx_error *err)
{
    struct ifreq ifr = {0};
    _cleanup_close_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return sbx__error(err, errno, "socket for lo");
    strcpy(ifr.ifr_name, "lo");
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
        return sbx__error(err, errno, "get flags of lo");
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
        return sbx__error(err, errno, "bring lo up");
    return 0;
}

struct child_args {
    const struct sbx_config *cfg;
    const sbx_sandbox *sb;
    const struct sbx__proc_spec *spec;
    size_t n_layers;
    int sock;
    int sysfs_fd;          /* from a pre-made network namespace, else -1 */
    const cpu_set_t *cpus; /* the caller's CPUs, to return to; or NULL */
};

/* A new process starts on its parent's CPU and, while the parent runs,
 * waits there even when another CPU is idle: the kernel places a forked
 * task next to its parent and does not move it for a while.  The child's
 * first steps (unsharing namespaces, stdio) are meant to overlap the
 * parent's (uids, directories, cgroups), so move it off the parent's CPU
 * now, while it is queued and moving it costs nothing; it returns to the
 * caller's CPUs when GO arrives.  Measured (bench/startup, 2 cores): the
 * child ran on the parent's CPU, after the parent blocked, in 3 of 4
 * creates. */
static void spread_child(pid_t pid, const cpu_set_t *cpus)
{
    cpu_set_t others = *cpus;
    int cpu = sched_getcpu();

    if (cpu < 0 || !CPU_ISSET(cpu, &others))
        return;
    CPU_CLR(cpu, &others);
    (void)sched_setaffinity(pid, sizeof(others), &others);
}

/* The sandbox's first process.  Never returns. */
__attribute__((noreturn)) static void child_main(const struct child_args *a)
{
    const struct sbx_config *cfg = a->cfg;
    int layer_fds[GO_MAX_FDS];
    size_t n_cgroup = 0;
    int sock = a->sock, r;
    sbx_error e = {0};
    struct sbx__rootfs rootfs = {
        .run_dir = a->sb->run_dir,
        .upper = a->sb->upper_dir,
        .layers = cfg->layers,
        .n_layers = a->n_layers,
        .layer_fds = layer_fds,
        .userns = a->sb->userns,
        .sysfs_fd = a->sysfs_fd,
        .resolv_conf = cfg->resolv_conf,
        .mounts = cfg->mounts,
        .mount_fds = layer_fds + (a->sb->userns ? a->n_layers : 0),
        .n_mounts = cfg->n_mounts,
        .disk_fd = -1,
        .workdir = cfg->workdir,
    };
    size_t n_go_fds = (a->sb->userns ? a->n_layers : 0) + cfg->n_mounts + (cfg->disk_mib ? 1 : 0);
    char work[PATH_MAX], disk_dir[PATH_MAX];

    /* The namespaces that are slow to make (the network's above all) are
     * unshared here, while the parent reserves uids and makes directories
     * and cgroups: the two halves of the set-up run on two cores at once. */
    if (unshare(SBX_NS_FLAGS & ~(a->sysfs_fd >= 0 ? CLONE_NEWNET : 0)) < 0) {
        sbx__error(&e, errno, "unshare mount, uts, ipc and net namespaces");
        goto fail;
    }
    /* stdio next: the fds named in cfg->stdio become 0-2, then everything
     * else but the setup socket is closed. */
    {
        int fds[3], keep[2], devnull = -1;

        for (int i = 0; i < 3; i++) {
            int src = cfg->stdio[i];
            if (src < 0) {
                if (devnull < 0)
                    devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
                src = devnull;
            }
            fds[i] = fcntl(src, F_DUPFD_CLOEXEC, 10);
            if (fds[i] < 0) {
                sbx__error(&e, errno, "duplicate stdio fd %d", cfg->stdio[i]);
                goto fail;
            }
        }
        sock = fcntl(sock, F_DUPFD_CLOEXEC, 10);
        if (rootfs.sysfs_fd >= 0)
            rootfs.sysfs_fd = fcntl(rootfs.sysfs_fd, F_DUPFD_CLOEXEC, 10);
        for (int i = 0; i < 3; i++)
            if (dup2(fds[i], i) < 0) {
                sbx__error(&e, errno, "dup2 stdio");
                goto fail;
            }
        keep[0] = sock;
        keep[1] = rootfs.sysfs_fd;
        sbx__close_fds_except(keep, rootfs.sysfs_fd >= 0 ? 2 : 1);
    }

    /* GO 1: the uid maps are written and the directories made; the
     * idmapped layers come with it (none without a user namespace), then
     * the mounts' trees. */
    r = recv_go(sock, layer_fds, n_go_fds, &n_cgroup, &e);
    /* Off the caller's CPU until here (see spread_child); the sandbox gets
     * the CPUs the caller had. */
    if (a->cpus)
        (void)sched_setaffinity(0, sizeof(*a->cpus), a->cpus);
    if (r < 0)
        goto fail;
    if (n_cgroup != 0) {
        sbx__error(&e, EPROTO, "cgroup fds before the layers");
        goto fail;
    }
    if (a->sb->userns && (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)) {
        sbx__error(&e, errno, "become root in the user namespace");
        goto fail;
    }
    if (setgroups(0, NULL) < 0) {
        sbx__error(&e, errno, "setgroups");
        goto fail;
    }
    snprintf(work, sizeof(work), "%s", a->sb->work_dir);
    rootfs.work = work;
    if (cfg->disk_mib) {
        snprintf(disk_dir, sizeof(disk_dir), "%s/disk", a->sb->state_dir);
        rootfs.disk_dir = disk_dir;
        rootfs.disk_fd = layer_fds[n_go_fds - 1];
    }
    r = sbx__rootfs_setup(&rootfs, &e);
    if (r < 0)
        goto fail;
    for (size_t i = 0; i < n_go_fds; i++)
        close(layer_fds[i]);
    {
        const char *hn = cfg->hostname ? cfg->hostname : cfg->id;
        if (sethostname(hn, strlen(hn)) < 0) {
            sbx__error(&e, errno, "sethostname `%s`", hn);
            goto fail;
        }
    }
    /* GO 2: the cgroup is ready, meanwhile; on v1 its tasks files come
     * with it and we move ourselves in (see v1_attach). */
    r = recv_go(sock, layer_fds, 0, &n_cgroup, &e);
    if (r < 0)
        goto fail;
    if (n_cgroup > 0) {
        r = sbx__cgroup_join_self(layer_fds, n_cgroup, &e);
        for (size_t i = 0; i < n_cgroup; i++)
            close(layer_fds[i]);
        if (r < 0)
            goto fail;
    }
    /* We are in the sandbox's cgroup now: make it our root. */
    if (unshare(CLONE_NEWCGROUP) < 0) {
        sbx__error(&e, errno, "unshare the cgroup namespace");
        goto fail;
    }
    /* A pre-made namespace comes with its loopback up (and belongs to the
     * host: the sandbox could not bring it up). */
    if (a->sysfs_fd < 0 && sbx__loopback_up(&e) < 0)
        goto fail;
    /* The sandbox's privileges drop here, once, before init starts anything:
     * init and everything it forks inherit the reduced bounding set,
     * no_new_privs and the seccomp filter (whose loading, the kernel
     * compiling and caching a program of hundreds of instructions, is the
     * costliest single step of a start). */
    r = sbx__caps_drop();
    if (r < 0) {
        sbx__error(&e, -r, "drop capabilities");
        goto fail;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        sbx__error(&e, errno, "set no_new_privs");
        goto fail;
    }
    r = sbx__seccomp_apply();
    if (r < 0) {
        sbx__error(&e, -r, "load the seccomp filter");
        goto fail;
    }
    sbx__init_run(a->spec, sock);

fail:
    sbx__msg_send(sock, SBX__MSG_ERROR, &e);
    _exit(127);
}

static int write_id_map(pid_t pid, const char *file, unsigned base, sbx_error *err)
{
    char path[64], map[64];

    snprintf(path, sizeof(path), "/proc/%d/%s", pid, file);
    snprintf(map, sizeof(map), "0 %u %u\n", base, SBX_UID_RANGE);
    return sbx__write_file(path, map, err);
}

/* Creates the sandbox's directories: the run dir (mount points) and the
 * state dir (the writable layer, owned by the sandbox's root so that what it
 * writes lands there on the host).  Both are mode 0700 and owned by the
 * sandbox's root: it must traverse them, and no other host user may reach
 * into them — the writable layer can hold set-uid files the sandbox made
 * (owned by real root when there is no user namespace). */
/* mkdir with exactly `mode`: the sandbox's root, an unprivileged host uid,
 * must traverse these whatever umask the caller (a daemon: 077) runs with. */
static int make_dir(const char *path, mode_t mode)
{
    if (mkdir(path, mode) < 0)
        return -1;
    return chmod(path, mode);
}

/* STATE/sandboxes/.spare-NAME: a state dir made ahead; NAME has an id's form. */
int sbx_state_spare_make(const char *state_dir, const char *name, sbx_error *err)
{
    char path[PATH_MAX], tmp[PATH_MAX], sub[PATH_MAX];
    int r;

    if (!state_dir || !valid_id(name))
        return sbx__error(err, EINVAL, "invalid spare name `%s`", name ? name : "(null)");
    snprintf(path, sizeof(path), "%s/sandboxes/.spare-%s", state_dir, name);
    snprintf(tmp, sizeof(tmp), "%s/sandboxes/.spare-%s.tmp", state_dir, name);
    (void)sbx__rm_rf(tmp, NULL);
    snprintf(sub, sizeof(sub), "%s/sandboxes", state_dir);
    if ((r = sbx__mkdir_p(sub, 0711, err)) < 0)
        return r;
    /* The modes make_dirs() gives them; ownership comes at the create. */
    if (make_dir(tmp, 0711) < 0)
        return sbx__error(err, errno, "mkdir `%s`", tmp);
    snprintf(sub, sizeof(sub), "%s/upper", tmp);
    r = make_dir(sub, 0755);
    if (r == 0) {
        snprintf(sub, sizeof(sub), "%s/work", tmp);
        r = make_dir(sub, 0700);
    }
    if (r == 0 && rename(tmp, path) < 0)
        r = -1;
    if (r < 0) {
        r = sbx__error(err, errno, "make `%s`", path);
        (void)sbx__rm_rf(tmp, NULL);
    }
    return r;
}

void sbx_state_spares_clear(const char *state_dir)
{
    char path[PATH_MAX];
    struct dirent *de;
    DIR *d;

    snprintf(path, sizeof(path), "%s/sandboxes", state_dir);
    d = opendir(path);
    while (d && (de = readdir(d)))
        if (!strncmp(de->d_name, ".spare-", 7))
            (void)sbx__rm_rf_at(dirfd(d), de->d_name, NULL);
    if (d)
        closedir(d);
}

/* The state dir from a spare: 0, or -1 when there is none to take. */
static int take_spare(sbx_sandbox *sb)
{
    char path[PATH_MAX];

    if (!sb->state_spare)
        return -1;
    snprintf(path, sizeof(path), "%s/sandboxes/.spare-%s", sb->state_root, sb->state_spare);
    return rename(path, sb->state_dir);
}

static int make_dirs(sbx_sandbox *sb, size_t n_layers, sbx_error *err)
{
    char path[PATH_MAX];
    uid_t owner = sb->userns ? sb->uid_base : 0;
    bool spare;
    int r;

    /* The run dir exists already: its creation is the id's reservation.
     * The state dir is a spare made ahead when there is one. */
    spare = take_spare(sb) == 0;
    if (!spare && (r = sbx__mkdir_p(sb->state_dir, 0711, err)) < 0)
        return r;
    if (sb->disk_mib) {
        /* The writable layer in a file system of its own size. */
        char img[PATH_MAX], dir[PATH_MAX];
        snprintf(img, sizeof(img), "%s/disk.img", sb->state_dir);
        snprintf(dir, sizeof(dir), "%s/disk", sb->state_dir);
        if (make_dir(dir, 0711) < 0)
            return sbx__error(err, errno, "mkdir `%s`", dir);
        if ((r = sbx_disk_create(img, sb->disk_mib, err)) < 0 ||
            (r = sbx_disk_mount(img, dir, err)) < 0)
            return r;
        spare = false; /* (its upper and work stay unused) */
    }
    snprintf(path, sizeof(path), "%s/rootfs", sb->run_dir);
    if (make_dir(path, 0755) < 0)
        return sbx__error(err, errno, "mkdir `%s`", path);
    snprintf(path, sizeof(path), "%s/lower", sb->run_dir);
    if (make_dir(path, 0711) < 0)
        return sbx__error(err, errno, "mkdir `%s`", path);
    for (size_t i = 0; sb->userns && i < n_layers; i++) {
        snprintf(path, sizeof(path), "%s/lower/%zu", sb->run_dir, i);
        if (make_dir(path, 0755) < 0)
            return sbx__error(err, errno, "mkdir `%s`", path);
    }
    if (!spare && make_dir(sb->upper_dir, 0755) < 0)
        return sbx__error(err, errno, "mkdir `%s`", sb->upper_dir);
    snprintf(path, sizeof(path), "%s", sb->work_dir);
    if (!spare && make_dir(path, 0700) < 0)
        return sbx__error(err, errno, "mkdir `%s`", path);
    {
        const char *const owned[] = {sb->run_dir, sb->state_dir, sb->upper_dir, path};

        for (size_t i = 0; i < SBX_ARRAY_SIZE(owned); i++) {
            if (sb->userns && chown(owned[i], owner, owner) < 0)
                return sbx__error(err, errno, "chown `%s`", owned[i]);
            if (i < 2 && chmod(owned[i], 0700) < 0)
                return sbx__error(err, errno, "chmod `%s`", owned[i]);
        }
    }
    return 0;
}

static int remove_dirs(const char *run_dir, const char *state_dir, sbx_error *err)
{
    int r1;

    /* A capped writable layer's file system first: the removal never
     * enters a mount point.  Its loop device goes with the mount. */
    if (state_dir) {
        char disk[PATH_MAX];
        snprintf(disk, sizeof(disk), "%s/disk", state_dir);
        if (sbx_is_mount_point(disk) && umount2(disk, MNT_DETACH) < 0)
            sbx__error(err, errno, "unmount `%s`", disk);
    }
    r1 = run_dir ? sbx__rm_rf(run_dir, err) : 0;
    int r2 = state_dir ? sbx__rm_rf(state_dir, r1 < 0 ? NULL : err) : 0;

    return r1 < 0 ? r1 : r2;
}

static int validate(const struct sbx_config *cfg, size_t *ret_n_layers, sbx_error *err)
{
    size_t n = 0;

    if (!valid_id(cfg->id))
        return sbx__error(err, EINVAL, "invalid sandbox id `%s`", cfg->id ? cfg->id : "(null)");
    if (!cfg->layers || !cfg->layers[0])
        return sbx__error(err, EINVAL, "sandbox `%s` has no image layers", cfg->id);
    for (; cfg->layers[n]; n++) {
        const char *l = cfg->layers[n];
        if (n >= SBX_MAX_LAYERS)
            return sbx__error(err, E2BIG, "more than %d layers", SBX_MAX_LAYERS);
        if (l[0] != '/' || strpbrk(l, ":,\n"))
            return sbx__error(err, EINVAL, "layer path `%s` must be absolute, without `:` or `,`",
                              l);
    }
    if (cfg->argv && !cfg->argv[0])
        return sbx__error(err, EINVAL, "empty argv");
    if (cfg->workdir && cfg->workdir[0] != '/')
        return sbx__error(err, EINVAL, "workdir `%s` is not absolute", cfg->workdir);
    if (cfg->hostname && (strlen(cfg->hostname) == 0 || strlen(cfg->hostname) > 64))
        return sbx__error(err, EINVAL, "invalid hostname `%s`", cfg->hostname);
    if (cfg->netns && (cfg->netns->net_fd < 0 || cfg->netns->sysfs_fd < 0))
        return sbx__error(err, EBADF, "pre-made network namespace without its fds");
    {
        int r = sbx__mounts_validate(cfg->mounts, cfg->n_mounts, err);
        if (r < 0)
            return r;
    }
    if (cfg->disk_mib && (cfg->disk_mib < 16 || cfg->disk_mib > (1ULL << 24)))
        return sbx__error(err, EINVAL, "disk_mib %llu: from 16 to %llu",
                          (unsigned long long)cfg->disk_mib, 1ULL << 24);
    *ret_n_layers = n;
    return 0;
}

int sbx_prepare(const char *run_dir, sbx_error *err)
{
    const char *run_root = run_dir ? run_dir : SBX_DEFAULT_RUN_DIR;
    int r;

    (void)sbx__mkdir_p(run_root, 0711, NULL);
    r = sbx__seccomp_prepare_cached(run_root, err);
    if (r < 0)
        return r;
    if (sbx__cgroup_ops() == &sbx__cgroup_v1_ops)
        sbx__cgroup_v1_warm();
    return 0;
}

int sbx_sandbox_create(const struct sbx_config *cfg, sbx_sandbox **ret, sbx_error *err)
{
    const char *run_root = cfg->run_dir ? cfg->run_dir : SBX_DEFAULT_RUN_DIR;
    const char *state_root = cfg->state_dir ? cfg->state_dir : SBX_DEFAULT_STATE_DIR;
    int layer_fds[GO_MAX_FDS];
    size_t n_layers = 0, n_layer_fds = 0;
    int n_cgroup_fds = 0;
    int sv[2] = {-1, -1};
    _cleanup_close_ int userns_fd = -1, own_netns = -1;
    sbx_sandbox *sb = NULL;
    struct sbx__proc_spec spec;
    struct clone_args ca = {0};
    cpu_set_t cpus;
    bool have_cpus;
    int pidfd = -1, r;
    pid_t pid;

    r = validate(cfg, &n_layers, err);
    if (r < 0)
        return r;
    /* The run dir's root must exist for the cached program; it is made
     * (0711, root's) below anyway. */
    (void)sbx__mkdir_p(run_root, 0711, NULL);
    r = sbx__seccomp_prepare_cached(run_root, err);
    if (r < 0)
        return r;

    sb = calloc(1, sizeof(*sb));
    if (!sb)
        return sbx__error(err, ENOMEM, "allocate sandbox `%s`", cfg->id);
    sb->pidfd = -1;
    sb->sync_fd = -1;
    sb->pid = -1;
    sb->userns = !cfg->no_userns;
    sb->cgops = sbx__cgroup_ops();
    sb->id = strdup(cfg->id);
    sb->run_root = strdup(run_root);
    sb->state_root = strdup(state_root);
    sb->run_dir = path_join(run_root, "sandboxes", cfg->id);
    sb->state_dir = path_join(state_root, "sandboxes", cfg->id);
    /* With a cap, the writable layer is in the file system at disk/. */
    sb->upper_dir = sb->state_dir
                        ? path_join(sb->state_dir, cfg->disk_mib ? "disk/upper" : "upper", NULL)
                        : NULL;
    sb->work_dir =
        sb->state_dir ? path_join(sb->state_dir, cfg->disk_mib ? "disk/work" : "work", NULL) : NULL;
    sb->disk_mib = cfg->disk_mib;
    sb->state_spare =
        cfg->state_spare && valid_id(cfg->state_spare) ? strdup(cfg->state_spare) : NULL;
    sb->cgroup_parent = strdup(cfg->cgroup_parent ? cfg->cgroup_parent : "sandboxd");
    if (cfg->n_rlimits > 0) {
        sb->rlimits = calloc(cfg->n_rlimits, sizeof(*sb->rlimits));
        if (sb->rlimits)
            memcpy(sb->rlimits, cfg->rlimits, cfg->n_rlimits * sizeof(*sb->rlimits));
    }
    sb->n_rlimits = cfg->n_rlimits;
    if (!sb->id || !sb->run_root || !sb->state_root || !sb->run_dir || !sb->state_dir ||
        !sb->upper_dir || !sb->work_dir || !sb->cgroup_parent || (cfg->n_rlimits && !sb->rlimits)) {
        sandbox_free(sb);
        return sbx__error(err, ENOMEM, "allocate sandbox `%s`", cfg->id);
    }

    /* The sandbox's directories must not exist yet: an id is used once. */
    if (mkdir(sb->run_dir, 0711) < 0 && errno == EEXIST) {
        r = sbx__error(err, EEXIST, "sandbox `%s` exists (`%s`)", cfg->id, sb->run_dir);
        sandbox_free(sb);
        return r;
    }
    r = sbx__mkdir_p(sb->run_dir, 0711, err);
    if (r < 0)
        goto fail;
    /* A pooled namespace's address is this sandbox's now. */
    if (cfg->netns && cfg->netns->addr &&
        sbx__lease_claim(run_root, cfg->netns->addr, cfg->id) == 0)
        sb->addr = cfg->netns->addr;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        r = sbx__error(err, errno, "socketpair");
        goto fail;
    }
    spec = (struct sbx__proc_spec){
        .argv = cfg->argv,
        .env = cfg->env,
        .workdir = cfg->workdir,
        .uid = cfg->uid,
        .gid = cfg->gid,
        .rlimits = cfg->rlimits,
        .n_rlimits = cfg->n_rlimits,
        .seccomp_inherited = true,
    };
    /* Only the user and pid namespaces are made here: the child unshares the
     * others itself (the network namespace alone takes half a millisecond)
     * while this side reserves uids and makes directories and cgroups.
     * clone3 without a stack behaves like fork, and hands back a pidfd. */
    ca.flags = CLONE_NEWPID | (sb->userns ? CLONE_NEWUSER : 0) | CLONE_PIDFD;
    ca.pidfd = (uint64_t)(uintptr_t)&pidfd;
    ca.exit_signal = SIGCHLD;
    /* cgroup v2: the child is born in its cgroup.  Moving it in afterwards
     * would take the kernel's global threadgroup lock for writing, which
     * now and then waits for an RCU grace period (milliseconds). */
    if (sb->cgops->clone_into) {
        r = sb->cgops->create(sb->cgroup_parent, cfg->id, &cfg->limits, &sb->cg, err);
        if (r < 0)
            goto fail;
        ca.flags |= CLONE_INTO_CGROUP;
        ca.cgroup = (uint64_t)sb->cg->clone_fd;
    }
    /* A pre-made network namespace is entered here, around the clone: the
     * child, once in its own user namespace, may not join one that belongs
     * to the host's. */
    if (cfg->netns) {
        own_netns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (own_netns < 0) {
            r = sbx__error(err, errno, "open our own network namespace");
            goto fail;
        }
        if (setns(cfg->netns->net_fd, CLONE_NEWNET) < 0) {
            r = sbx__error(err, errno, "enter the pre-made network namespace");
            goto fail;
        }
    }
    have_cpus = sched_getaffinity(0, sizeof(cpus), &cpus) == 0 && CPU_COUNT(&cpus) > 1;
    pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
    if (pid < 0)
        r = sbx__error(err, errno, "clone sandbox `%s`", cfg->id);
    if (pid != 0 && own_netns >= 0 && setns(own_netns, CLONE_NEWNET) < 0) {
        /* Cannot happen (we are root in the namespace we came from); if it
         * did, carrying on in the sandbox's network would be wrong. */
        sbx__error(err, errno, "return to our own network namespace");
        abort();
    }
    if (pid < 0)
        goto fail;
    if (pid == 0) {
        struct child_args a = {.cfg = cfg,
                               .sb = sb,
                               .spec = &spec,
                               .n_layers = n_layers,
                               .sock = sv[1],
                               .sysfs_fd = cfg->netns ? cfg->netns->sysfs_fd : -1,
                               .cpus = have_cpus ? &cpus : NULL};
        close(sv[0]);
        child_main(&a);
    }
    if (have_cpus)
        spread_child(pid, &cpus);
    close(sv[1]);
    sv[1] = -1;
    sb->pid = pid;
    sb->pidfd = pidfd;

    if (sb->userns) {
        char path[64];

        r = sbx__uid_range_alloc(run_root, cfg->id, &sb->uid_base, err);
        if (r < 0)
            goto fail_child;
        if ((r = write_id_map(pid, "uid_map", sb->uid_base, err)) < 0 ||
            (r = write_id_map(pid, "gid_map", sb->uid_base, err)) < 0)
            goto fail_child;
        snprintf(path, sizeof(path), "/proc/%d/ns/user", pid);
        userns_fd = open(path, O_RDONLY | O_CLOEXEC);
        if (userns_fd < 0) {
            r = sbx__error(err, errno, "open `%s`", path);
            goto fail_child;
        }
    }
    r = make_dirs(sb, n_layers, err);
    if (r < 0)
        goto fail_child;
    for (; sb->userns && n_layer_fds < n_layers; n_layer_fds++) {
        r = sbx__idmapped_tree(cfg->layers[n_layer_fds], userns_fd, err);
        if (r < 0)
            goto fail_child;
        layer_fds[n_layer_fds] = r;
    }
    for (size_t i = 0; i < cfg->n_mounts; i++, n_layer_fds++) {
        r = sbx__mount_source(&cfg->mounts[i], sb->userns ? userns_fd : -1, err);
        if (r < 0)
            goto fail_child;
        layer_fds[n_layer_fds] = r;
    }
    if (sb->disk_mib) {
        /* The child's mount namespace was copied before this mount. */
        char disk[PATH_MAX];
        snprintf(disk, sizeof(disk), "%s/disk", sb->state_dir);
        r = (int)syscall(SYS_open_tree, AT_FDCWD, disk, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
        if (r < 0) {
            r = sbx__error(err, errno, "open_tree `%s`", disk);
            goto fail_child;
        }
        layer_fds[n_layer_fds++] = r;
    }
    /* GO 1: the child builds the root file system while we make the
     * cgroup. */
    r = send_go(sv[0], layer_fds, n_layer_fds, 0, cfg->id, err);
    for (size_t i = 0; i < n_layer_fds; i++)
        close(layer_fds[i]);
    n_layer_fds = 0;
    if (r < 0)
        goto fail_child;
    if (!sb->cg) {
        r = sb->cgops->create(sb->cgroup_parent, cfg->id, &cfg->limits, &sb->cg, err);
        if (r < 0)
            goto fail_child;
    }
    /* GO 2.  The child moves itself into its cgroup where the backend
     * allows (v1): cheaper than moving it from here (see v1_attach). */
    n_cgroup_fds = sb->cgops->open_self_attach(sb->cg, layer_fds, GO_MAX_FDS, err);
    if (n_cgroup_fds < 0) {
        r = n_cgroup_fds;
        goto fail_child;
    }
    n_layer_fds = (size_t)n_cgroup_fds;
    if (n_cgroup_fds == 0 && !sb->cgops->clone_into) {
        r = sb->cgops->attach(sb->cg, pid, err);
        if (r < 0)
            goto fail_child;
    }
    r = send_go(sv[0], layer_fds, n_layer_fds, n_cgroup_fds, cfg->id, err);
    for (size_t i = 0; i < n_layer_fds; i++)
        close(layer_fds[i]);
    n_layer_fds = 0;
    if (r < 0)
        goto fail_child;

    r = recv_ready(sv[0], cfg->id, 0, err);
    if (r < 0)
        goto fail_child;
    sb->sync_fd = sv[0];
    *ret = sb;
    return 0;

fail_child:
    for (size_t i = 0; i < n_layer_fds; i++)
        close(layer_fds[i]);
    syscall(SYS_pidfd_send_signal, sb->pidfd, SIGKILL, NULL, 0);
    {
        siginfo_t si;
        while (waitid(P_PIDFD, (id_t)sb->pidfd, &si, WEXITED) < 0 && errno == EINTR)
            ;
    }
fail:
    if (sv[0] >= 0)
        close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    if (sb->cg)
        sb->cgops->destroy(sb->cg, NULL);
    sb->cg = NULL;
    if (sb->userns)
        sbx__uid_range_free(run_root, cfg->id);
    if (sb->addr)
        sbx__lease_release(run_root, sb->addr);
    remove_dirs(sb->run_dir, sb->state_dir, NULL);
    sandbox_free(sb);
    return r;
}

pid_t sbx_sandbox_pid(const sbx_sandbox *sb)
{
    return sb->pid;
}

int sbx_sandbox_pidfd(const sbx_sandbox *sb)
{
    return sb->pidfd;
}

int sbx_sandbox_exit_fd(const sbx_sandbox *sb)
{
    return sb->sync_fd >= 0 ? sb->sync_fd : sb->pidfd;
}

int sbx_sandbox_oom_fd(const sbx_sandbox *sb)
{
    return sb->cg ? sb->cgops->oom_fd(sb->cg) : -1;
}

const char *sbx_sandbox_upper_dir(const sbx_sandbox *sb)
{
    return sb->upper_dir;
}

int sbx_sandbox_stats(sbx_sandbox *sb, struct sbx_stats *ret, sbx_error *err)
{
    if (!sb->cg)
        return sbx__error(err, ESRCH, "sandbox `%s` has no cgroup", sb->id);
    return sb->cgops->stats(sb->cg, ret, err);
}

int sbx_sandbox_set_limits(sbx_sandbox *sb, const struct sbx_limits *lim, sbx_error *err)
{
    if (!sb->cg)
        return sbx__error(err, ESRCH, "sandbox `%s` has no cgroup", sb->id);
    if (lim->pids_max < 0 || lim->cpu_weight > 10000)
        return sbx__error(err, EINVAL, "limits for `%s`: pids_max %" PRId64 ", cpu_weight %" PRIu64,
                          sb->id, lim->pids_max, lim->cpu_weight);
    /* Without its OOM notification an OOM kill would go unreported. */
    if (lim->memory_bytes && sb->cgops->oom_fd(sb->cg) < 0)
        return sbx__error(err, EINVAL,
                          "sandbox `%s` was created without a memory limit: none can be set now",
                          sb->id);
    return sb->cgops->update(sb->cg, lim, err);
}

static uint64_t oom_kills(sbx_sandbox *sb)
{
    struct sbx_stats st = {0};

    if (!sb->cg || sb->cgops->stats(sb->cg, &st, NULL) < 0)
        return 0;
    return st.oom_kills;
}

/* Kills every process of the sandbox: init first (which takes down its pid
 * namespace), then whatever the cgroup still holds. */
static int kill_all(sbx_sandbox *sb, sbx_error *err)
{
    if (sb->pidfd >= 0 && syscall(SYS_pidfd_send_signal, sb->pidfd, SIGKILL, NULL, 0) < 0 &&
        errno != ESRCH)
        return sbx__error(err, errno, "kill sandbox `%s`", sb->id);
    return sb->cg ? sb->cgops->kill(sb->cg, err) : 0;
}

/* Records how the sandbox finished, given the entrypoint's returncode. */
static void finish(sbx_sandbox *sb, int returncode)
{
    sb->finished = true;
    if (!sb->oom && oom_kills(sb) > 0)
        sb->oom = true;
    if (sb->oom) {
        sb->exit.reason = SBX_FINISH_OOM;
        sb->exit.returncode = 137;
        kill_all(sb, NULL);
    } else if (sb->terminated) {
        sb->exit.reason = SBX_FINISH_TERMINATED;
        sb->exit.returncode = 137;
    } else {
        sb->exit.reason = SBX_FINISH_EXITED;
        sb->exit.returncode = returncode;
    }
}

/* Reads init's EXIT message, if one has come.  At EOF (init died without
 * one: killed) the socket is closed and the pidfd decides. */
static int read_exit(sbx_sandbox *sb, int *ret_returncode)
{
    struct sbx__msg m;
    ssize_t n;

    if (sb->sync_fd < 0)
        return 0;
    do
        n = recv(sb->sync_fd, &m, sizeof(m), MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return 0; /* EAGAIN: nothing yet */
    if (n == (ssize_t)sizeof(m) && m.type == SBX__MSG_EXIT) {
        *ret_returncode = m.code;
        return 1;
    }
    /* EOF, or anything but EXIT: init is gone or not to be listened to. */
    close(sb->sync_fd);
    sb->sync_fd = -1;
    return 0;
}

int sbx_sandbox_poll(sbx_sandbox *sb, struct sbx_exit *ret, sbx_error *err)
{
    siginfo_t si = {0};
    int oomfd, returncode;

    if (sb->finished) {
        if (ret)
            *ret = sb->exit;
        return 1;
    }
    /* An OOM kill anywhere ends the whole sandbox (cgroup v1 has no
     * memory.oom.group): the notification fd tells us to look. */
    oomfd = sbx_sandbox_oom_fd(sb);
    if (oomfd >= 0 && !sb->oom) {
        struct pollfd p = {.fd = oomfd, .events = POLLIN | POLLPRI};
        if (poll(&p, 1, 0) > 0 && oom_kills(sb) > 0) {
            uint64_t v;
            if (p.revents & POLLIN)
                (void)!read(oomfd, &v, sizeof(v));
            sb->oom = true;
            kill_all(sb, NULL);
        }
    }
    if (read_exit(sb, &returncode)) {
        finish(sb, returncode);
    } else {
        if (waitid(P_PIDFD, (id_t)sb->pidfd, &si, WEXITED | WNOHANG) < 0)
            return sbx__error(err, errno, "wait for sandbox `%s`", sb->id);
        if (si.si_pid == 0)
            return 0;
        sb->reaped = true;
        finish(sb, si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status);
    }
    if (ret)
        *ret = sb->exit;
    return 1;
}

int sbx_sandbox_wait(sbx_sandbox *sb, int timeout_ms, struct sbx_exit *ret, sbx_error *err)
{
    struct timespec start;

    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        struct pollfd p[3] = {
            {.fd = sb->pidfd, .events = POLLIN},
            {.fd = sb->sync_fd, .events = POLLIN},
            {.fd = sb->oom ? -1 : sbx_sandbox_oom_fd(sb), .events = POLLIN | POLLPRI}};
        struct timespec now;
        int left = -1, r;

        r = sbx_sandbox_poll(sb, ret, err);
        if (r != 0)
            return r;
        if (timeout_ms >= 0) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            left = timeout_ms - (int)((now.tv_sec - start.tv_sec) * 1000 +
                                      (now.tv_nsec - start.tv_nsec) / 1000000);
            if (left <= 0)
                return 0;
        }
        /* poll() ignores the negative fds: a closed socket, no OOM fd. */
        if (poll(p, 3, left) < 0 && errno != EINTR)
            return sbx__error(err, errno, "poll sandbox `%s`", sb->id);
    }
}

int sbx_sandbox_terminate(sbx_sandbox *sb, sbx_error *err)
{
    /* A sandbox that already exited keeps its own returncode. */
    (void)sbx_sandbox_poll(sb, NULL, NULL);
    if (sb->finished || sb->terminated)
        return 0;
    sb->terminated = true;
    return kill_all(sb, err);
}

/* Finished may mean only that init has said EXIT: reap it, which waits
 * for the kernel to have killed everything in its pid namespace. */
static void reap_init(sbx_sandbox *sb)
{
    if (!sb->reaped && sb->pidfd >= 0) {
        siginfo_t si;
        while (waitid(P_PIDFD, (id_t)sb->pidfd, &si, WEXITED) < 0 && errno == EINTR)
            ;
        sb->reaped = true;
    }
}

int sbx_sandbox_save_upper(sbx_sandbox *sb, const char *dest, uid_t *ret_uid_base, sbx_error *err)
{
    struct stat st;

    if (!sb->finished)
        return sbx__error(err, EBUSY, "sandbox `%s` has not finished", sb->id);
    reap_init(sb);
    if (stat(sb->upper_dir, &st) < 0)
        return sbx__error(err, errno, "stat `%s`", sb->upper_dir);
    if (rename(sb->upper_dir, dest) < 0)
        return sbx__error(err, errno, "move `%s` to `%s`", sb->upper_dir, dest);
    *ret_uid_base = sb->userns ? st.st_uid : 0;
    return 0;
}

int sbx_sandbox_destroy(sbx_sandbox *sb, sbx_error *err)
{
    int r = 0, r2;

    if (!sb)
        return 0;
    if (!sb->finished) {
        r = sbx_sandbox_terminate(sb, err);
        if (sbx_sandbox_wait(sb, -1, NULL, r < 0 ? NULL : err) < 0 && r == 0)
            r = -EIO;
    }
    reap_init(sb);
    if (sb->cg) {
        r2 = sb->cgops->destroy(sb->cg, r < 0 ? NULL : err);
        sb->cg = NULL;
        if (r2 < 0 && r == 0)
            r = r2;
    }
    if (sb->userns)
        sbx__uid_range_free(sb->run_root, sb->id);
    /* The veth went with the namespace, when its last process did. */
    if (sb->addr)
        sbx__lease_release(sb->run_root, sb->addr);
    r2 = remove_dirs(sb->run_dir, sb->state_dir, r < 0 ? NULL : err);
    if (r2 < 0 && r == 0)
        r = r2;
    sandbox_free(sb);
    return r;
}

int sbx_cgroup_prune(const char *cgroup_parent, sbx_error *err)
{
    return sbx__cgroup_ops()->prune(cgroup_parent ? cgroup_parent : "sandboxd", err);
}

int sbx_sandbox_cleanup(const char *run_dir, const char *state_dir, const char *cgroup_parent,
                        const char *id, sbx_error *err)
{
    _cleanup_free_ char *rd = NULL, *sd = NULL;
    int r;

    if (!valid_id(id))
        return sbx__error(err, EINVAL, "invalid sandbox id `%s`", id ? id : "(null)");
    run_dir = run_dir ? run_dir : SBX_DEFAULT_RUN_DIR;
    state_dir = state_dir ? state_dir : SBX_DEFAULT_STATE_DIR;
    r = sbx__cgroup_ops()->remove(cgroup_parent ? cgroup_parent : "sandboxd", id, err);
    if (r < 0)
        return r;
    rd = path_join(run_dir, "sandboxes", id);
    sd = path_join(state_dir, "sandboxes", id);
    if (!rd || !sd)
        return sbx__error(err, ENOMEM, "cleanup `%s`", id);
    sbx__uid_range_free(run_dir, id);
    sbx__leases_release_owned(run_dir, id);
    return remove_dirs(rd, sd, err);
}
